//! TOTP (RFC 6238) over HOTP (RFC 4226), with the RFC's SHA-1/SHA-256/SHA-512 variants, and
//! RFC 4648 base32 for the shared secret. Hand-written on the workspace's `hmac`/`sha1`/`sha2`
//! (a few dozen lines, checked against the RFC 6238 test vectors) rather than another crate.

use hmac::{Hmac, Mac};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// Authenticator apps' common settings: SHA-1, 6 digits, 30-second steps.
pub const DIGITS: u32 = 6;
pub const STEP_SECS: i64 = 30;

/// HOTP value of `counter` (RFC 4226 §5.3 dynamic truncation).
pub fn hotp(alg: TotpAlgorithm, key: &[u8], counter: u64, digits: u32) -> u32 {
    let msg = counter.to_be_bytes();
    let digest: Vec<u8> = match alg {
        TotpAlgorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(key, &msg),
        TotpAlgorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(key, &msg),
        TotpAlgorithm::Sha512 => mac::<Hmac<sha2::Sha512>>(key, &msg),
    };
    let offset = (digest[digest.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    bin % 10u32.pow(digits)
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// TOTP at Unix time `unix_secs` with step `step_secs` (RFC 6238 §4).
pub fn totp(alg: TotpAlgorithm, key: &[u8], unix_secs: i64, step_secs: i64, digits: u32) -> u32 {
    hotp(alg, key, (unix_secs.max(0) / step_secs) as u64, digits)
}

/// Checks a user's 6-digit SHA-1 code at `unix_secs`, allowing one step of clock drift either
/// way. Returns the matched time step so the caller can refuse a second use of the same code.
pub fn check(key: &[u8], code: &str, unix_secs: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let want: u32 = code.parse().ok()?;
    let step = unix_secs / STEP_SECS;
    (-1..=1).map(|d| step + d).find(|s| *s >= 0 && hotp(TotpAlgorithm::Sha1, key, *s as u64, DIGITS) == want)
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = B32.iter().position(|b| *b as char == c.to_ascii_uppercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// `otpauth://` URI for authenticator apps (Key Uri Format).
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

/// The URI as a QR code in SVG, for the authenticator app to scan (medium error correction,
/// the standard quiet zone). `None` only for text beyond a QR code's capacity, which an
/// `otpauth://` URI of ours never reaches.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    Some(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B.
    #[test]
    fn rfc6238_test_vectors() {
        let k1 = b"12345678901234567890";
        let k256 = b"12345678901234567890123456789012";
        let k512 = b"1234567890123456789012345678901234567890123456789012345678901234";
        let table: [(i64, u32, u32, u32); 6] = [
            (59, 94287082, 46119246, 90693936),
            (1111111109, 7081804, 68084774, 25091201),
            (1111111111, 14050471, 67062674, 99943326),
            (1234567890, 89005924, 91819424, 93441116),
            (2000000000, 69279037, 90698825, 38618901),
            (20000000000, 65353130, 77737706, 47863826),
        ];
        for (t, sha1, sha256, sha512) in table {
            assert_eq!(totp(TotpAlgorithm::Sha1, k1, t, 30, 8), sha1, "SHA1 at {t}");
            assert_eq!(totp(TotpAlgorithm::Sha256, k256, t, 30, 8), sha256, "SHA256 at {t}");
            assert_eq!(totp(TotpAlgorithm::Sha512, k512, t, 30, 8), sha512, "SHA512 at {t}");
        }
    }

    /// RFC 4226 Appendix D.
    #[test]
    fn rfc4226_hotp_vectors() {
        let want = [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(hotp(TotpAlgorithm::Sha1, b"12345678901234567890", i as u64, 6), *w);
        }
    }

    #[test]
    fn base32_round_trip_and_rfc4648_vectors() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        let k: Vec<u8> = (0..20).collect();
        assert_eq!(base32_decode(&base32_encode(&k)).unwrap(), k);
        assert!(base32_decode("MZ1W").is_none());
    }

    #[test]
    fn check_allows_one_step_of_drift_only() {
        let k = b"12345678901234567890";
        let code = format!("{:06}", totp(TotpAlgorithm::Sha1, k, 1000, 30, 6));
        assert_eq!(check(k, &code, 1000), Some(1000 / 30));
        assert!(check(k, &code, 1000 + 30).is_some());
        assert!(check(k, &code, 1000 + 90).is_none());
        assert!(check(k, "12345", 1000).is_none());
    }

    /// Draws the SVG's dark path (`M{x} {y}h{w}v{h}H{x}V{y}` rectangles) into a greyscale
    /// raster and decodes it as a phone would.
    fn decode_svg(svg: &str) -> String {
        let attr = |name: &str| -> usize {
            let start = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            svg[start..].split('"').next().unwrap().parse().unwrap()
        };
        let (w, h) = (attr("width"), attr("height"));
        let mut dark = vec![false; w * h];
        let path = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
        for rect in path.split('M').filter(|r| !r.is_empty()) {
            let nums: Vec<usize> = rect
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().unwrap())
                .collect();
            let (x, y, rw, rh) = (nums[0], nums[1], nums[2], nums[3]);
            for yy in y..y + rh {
                for xx in x..x + rw {
                    dark[yy * w + xx] = true;
                }
            }
        }
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| if dark[y * w + x] { 0 } else { 255 });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the picture");
        grids[0].decode().expect("the QR code decodes").1
    }

    #[test]
    fn the_enrolment_qr_code_decodes_to_the_uri() {
        let uri = otpauth_uri("tingzhen", "王护士@east", &base32_encode(&[7u8; 20]));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg") && svg.contains("viewBox"), "{svg}");
        assert_eq!(decode_svg(&svg), uri);
        assert!(qr_svg(&"x".repeat(5000)).is_none(), "beyond capacity is None, not a panic");
    }
}
