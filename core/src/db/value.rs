//! The values that cross the store boundary, independent of the engine: parameters go in as
//! [`Value`]s (borrowed, so binding a string costs no copy) and columns come out through
//! [`FromValue`]. Both engines see the same five storage classes SQLite has; PostgreSQL's wider
//! types are folded into them on the way out (BOOL and NUMERIC without scale → Int, and so on),
//! so a call site reads a column the same way whichever engine holds it.

/// One parameter or column value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }
}

/// Something that binds as a statement parameter.
pub trait Param {
    fn value(&self) -> Value<'_>;
}

impl Param for Value<'_> {
    fn value(&self) -> Value<'_> {
        *self
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Param + ?Sized> Param for Box<T> {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, Param::value)
    }
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> Value<'_> {
                Value::Int(*self as i64)
            }
        }
    )*};
}
// u64 and usize above i64::MAX wrap; the store never holds such counts.
int_param!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Param for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl Param for f32 {
    fn value(&self) -> Value<'_> {
        Value::Real(f64::from(*self))
    }
}

impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Param for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl Param for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

/// A statement's parameter list: `()`, an array or slice of one type, or `params![a, b, …]`
/// for mixed types.
pub trait Params {
    fn values(&self) -> Vec<Value<'_>>;
}

impl Params for () {
    fn values(&self) -> Vec<Value<'_>> {
        Vec::new()
    }
}

impl<T: Param, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(Param::value).collect()
    }
}

impl<T: Param> Params for [T] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(Param::value).collect()
    }
}

impl<T: Param> Params for Vec<T> {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(Param::value).collect()
    }
}

impl<P: Params + ?Sized> Params for &P {
    fn values(&self) -> Vec<Value<'_>> {
        (**self).values()
    }
}

/// Mixed-type parameters: `params![name, 42, Some(1.5)]`.
#[macro_export]
macro_rules! params {
    () => { () };
    ($($p:expr),+ $(,)?) => { [$(&$p as &dyn $crate::db::Param),+] };
}

/// A column read back into a Rust value. The error says what was found instead.
pub trait FromValue: Sized {
    fn from_value(v: Value<'_>) -> Result<Self, String>;
}

fn expected<T>(what: &str, v: Value<'_>) -> Result<T, String> {
    Err(format!("expected {what}, found {}", v.kind()))
}

impl FromValue for i64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            // PostgreSQL's SUM/AVG of integers come back as NUMERIC, folded to Real when they
            // carry a scale; an integral one is still an integer to the caller.
            Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            other => expected("an integer", other),
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: Value<'_>) -> Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("integer {i} out of range for {}", stringify!($t)))
            }
        }
    )*};
}
int_from_value!(i32, u32, u64, usize, u16, u8);

impl FromValue for bool {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromValue for f64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => expected("a number", other),
        }
    }
}

impl FromValue for String {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.to_owned()),
            other => expected("text", other),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.to_vec()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => expected("a blob", other),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_bind_mixed_types_without_copies() {
        let name = String::from("his-db-01");
        let p = crate::params![name, 7_i32, Some(1.5), None::<i64>, true];
        let v = p.values();
        assert_eq!(v, vec![Value::Text("his-db-01"), Value::Int(7), Value::Real(1.5), Value::Null, Value::Int(1)]);
        assert!(().values().is_empty());
        assert_eq!(["a", "b"].values(), vec![Value::Text("a"), Value::Text("b")]);
    }

    #[test]
    fn columns_convert_or_say_why_not() {
        assert_eq!(i64::from_value(Value::Int(5)), Ok(5));
        assert_eq!(i64::from_value(Value::Real(12.0)), Ok(12));
        assert!(i64::from_value(Value::Real(1.5)).unwrap_err().contains("a real"));
        assert_eq!(u32::from_value(Value::Int(-1)).unwrap_err(), "integer -1 out of range for u32");
        assert_eq!(Option::<String>::from_value(Value::Null), Ok(None));
        assert!(String::from_value(Value::Null).unwrap_err().contains("NULL"));
        assert_eq!(f64::from_value(Value::Int(3)), Ok(3.0));
        assert!(bool::from_value(Value::Int(2)).unwrap());
    }
}
