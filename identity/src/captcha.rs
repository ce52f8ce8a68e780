//! Image captcha: a random code drawn as a PNG on the server from an embedded 5×7 bitmap font,
//! scaled, sheared and jittered per glyph, over noise lines and speckles. The answer never
//! leaves the server; the store (`Identity`) keeps only its id hash and answer, and consumes it
//! on the first check, right or wrong.

use rand::Rng;

/// Characters that do not look alike (no 0/O, 1/I/L, 5/S, 8/B, 2/Z).
const ALPHABET: &[u8] = b"34679ACDEFHJKMNPRTUVWXY";
pub const CODE_LEN: usize = 5;
const W: usize = 160;
const H: usize = 56;
const SCALE: usize = 4;

fn glyph(c: u8) -> [&'static str; 7] {
    match c {
        b'3' => ["11110", "00001", "00001", "01110", "00001", "00001", "11110"],
        b'4' => ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
        b'6' => ["01110", "10000", "10000", "11110", "10001", "10001", "01110"],
        b'7' => ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
        b'9' => ["01110", "10001", "10001", "01111", "00001", "00001", "01110"],
        b'A' => ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
        b'C' => ["01111", "10000", "10000", "10000", "10000", "10000", "01111"],
        b'D' => ["11110", "10001", "10001", "10001", "10001", "10001", "11110"],
        b'E' => ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
        b'F' => ["11111", "10000", "10000", "11110", "10000", "10000", "10000"],
        b'H' => ["10001", "10001", "10001", "11111", "10001", "10001", "10001"],
        b'J' => ["00111", "00010", "00010", "00010", "00010", "10010", "01100"],
        b'K' => ["10001", "10010", "10100", "11000", "10100", "10010", "10001"],
        b'M' => ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
        b'N' => ["10001", "11001", "10101", "10011", "10001", "10001", "10001"],
        b'P' => ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
        b'R' => ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
        b'T' => ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
        b'U' => ["10001", "10001", "10001", "10001", "10001", "10001", "01110"],
        b'V' => ["10001", "10001", "10001", "10001", "10001", "01010", "00100"],
        b'W' => ["10001", "10001", "10001", "10101", "10101", "11011", "10001"],
        b'X' => ["10001", "10001", "01010", "00100", "01010", "10001", "10001"],
        _ => ["10001", "10001", "01010", "00100", "00100", "00100", "00100"], // Y
    }
}

#[derive(Debug, thiserror::Error)]
#[error("captcha image encoding failed: {0}")]
pub struct CaptchaError(String);

/// A new random code.
pub fn random_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Draws `code` as a grayscale PNG.
pub fn render_png(code: &str) -> Result<Vec<u8>, CaptchaError> {
    let mut rng = rand::rng();
    let mut px = vec![255u8; W * H];
    // Speckles and lines first, so glyph strokes stay on top and readable.
    for _ in 0..(W * H / 12) {
        let i = rng.random_range(0..px.len());
        px[i] = rng.random_range(120..220);
    }
    for _ in 0..5 {
        let (x0, y0) = (rng.random_range(0..W) as f32, rng.random_range(0..H) as f32);
        let (x1, y1) = (rng.random_range(0..W) as f32, rng.random_range(0..H) as f32);
        let shade = rng.random_range(60..160);
        for t in 0..=200 {
            let f = t as f32 / 200.0;
            let (x, y) = ((x0 + (x1 - x0) * f) as usize, (y0 + (y1 - y0) * f) as usize);
            if x < W && y < H {
                px[y * W + x] = shade;
            }
        }
    }
    let cell = (W - 8) / code.len().max(1);
    for (i, c) in code.bytes().enumerate() {
        let rows = glyph(c.to_ascii_uppercase());
        let shear: f32 = rng.random_range(-0.35..0.35);
        let x0 = 4 + i * cell + rng.random_range(0..(cell.saturating_sub(5 * SCALE)).max(1));
        let y0 = rng.random_range(2..(H - 7 * SCALE - 2));
        let ink = rng.random_range(0..70);
        for (ry, row) in rows.iter().enumerate() {
            for (rx, bit) in row.bytes().enumerate() {
                if bit != b'1' {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let y = y0 + ry * SCALE + dy;
                        let lean = (shear * (7 * SCALE / 2) as f32 - shear * (ry * SCALE + dy) as f32) as isize;
                        let x = (x0 + rx * SCALE + dx) as isize + lean;
                        if (0..W as isize).contains(&x) && y < H {
                            px[y * W + x as usize] = ink;
                        }
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, W as u32, H as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| CaptchaError(e.to_string()))?;
        w.write_image_data(&px).map_err(|e| CaptchaError(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png_of_the_right_size() {
        let code = random_code();
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
        let png = render_png(&code).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let reader = dec.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (W as u32, H as u32));
    }

    #[test]
    fn every_alphabet_character_has_its_own_glyph() {
        let glyphs: std::collections::HashSet<_> = ALPHABET.iter().map(|c| glyph(*c)).collect();
        assert_eq!(glyphs.len(), ALPHABET.len());
    }
}
