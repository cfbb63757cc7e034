//! The template's source hash: its version in the tuning cache.
//!
//! FNV-1a (64 bit) over the attribute's tokens and the module's tokens, printed as 16 lowercase
//! hex digits. Token text is independent of whitespace and plain comments, so reformatting a
//! template keeps its tuned results while any change to its tokens (doc comments included)
//! re-tunes it.

use proc_macro2::TokenStream;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h = OFFSET;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// The hash of `#[gpu_template(<attr>)] <item>`.
pub fn source_hash(attr: &TokenStream, item: &TokenStream) -> String {
    let (attr, item) = (attr.to_string(), item.to_string());
    format!(
        "{:016x}",
        fnv1a64(&[attr.as_bytes(), b"\n", item.as_bytes()])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
    }

    #[test]
    fn hash_follows_tokens_not_whitespace() {
        let a = source_hash(
            &quote!(name = "g"),
            &quote!(
                mod g {
                    params! { t in [1, 2] }
                }
            ),
        );
        let b = source_hash(
            &quote!(name = "g"),
            &quote!(
                mod g {
                    params! { t in [1,2] }
                }
            ),
        );
        let c = source_hash(
            &quote!(name = "g"),
            &quote!(
                mod g {
                    params! { t in [1, 3] }
                }
            ),
        );
        assert_eq!(a.len(), 16);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
