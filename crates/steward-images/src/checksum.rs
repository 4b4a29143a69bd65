//! Upstream checksum files and expected digests.
//!
//! Upstreams publish digests in several shapes (reference §3): GNU `sha256sum` output
//! (`<hex>  <file>`), its binary-mode form (`<hex> *<file>`, Ubuntu's `SHA256SUMS`), BSD tags
//! (`SHA256 (<file>) = <hex>`, Fedora, FreeBSD), a bare digest in a sidecar file (Alpine's
//! `.sha512`), and per-file `.CHECKSUM` files (OSISM's CAPI images, GNU format). The algorithm
//! follows from the BSD tag or the digest length. MD5 and SHA-1 are recognised but reported as
//! weak: verifying with them needs an explicit opt-in.

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    /// MD5 (weak).
    Md5,
    /// SHA-1 (weak).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// By name (`sha256`, `SHA256`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace('-', "").as_str() {
            "md5" => Some(Self::Md5),
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// By the length of a hex digest.
    pub fn from_hex_len(len: usize) -> Option<Self> {
        match len {
            32 => Some(Self::Md5),
            40 => Some(Self::Sha1),
            64 => Some(Self::Sha256),
            128 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Hex digits of a digest.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha1 => 40,
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }

    /// Too weak to trust for verifying an import.
    pub fn is_weak(self) -> bool {
        matches!(self, Self::Md5 | Self::Sha1)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        })
    }
}

/// A digest an image must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDigest {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Lower-case hex.
    pub hex: String,
}

/// A digest that cannot be read or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChecksumError {
    /// Not `<algorithm>:<hex>`.
    #[error("{0:?} is not <algorithm>:<hex> (sha256:…, sha512:…)")]
    Malformed(String),
    /// The hex does not fit the algorithm.
    #[error("a {algorithm} digest has {expected} hex digits, {found:?} has {}", found.len())]
    Length {
        /// The algorithm named.
        algorithm: Algorithm,
        /// Digits it needs.
        expected: usize,
        /// The digits given.
        found: String,
    },
    /// The checksum file does not list the file.
    #[error("the checksum file has no entry for {0:?}")]
    NotListed(String),
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ExpectedDigest {
    /// Parses the definition form `<algorithm>:<hex>`.
    pub fn parse(text: &str) -> Result<Self, ChecksumError> {
        let (name, hex) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| ChecksumError::Malformed(text.to_owned()))?;
        let algorithm =
            Algorithm::from_name(name).ok_or_else(|| ChecksumError::Malformed(text.to_owned()))?;
        if !is_hex(hex) {
            return Err(ChecksumError::Malformed(text.to_owned()));
        }
        if hex.len() != algorithm.hex_len() {
            return Err(ChecksumError::Length {
                algorithm,
                expected: algorithm.hex_len(),
                found: hex.to_owned(),
            });
        }
        Ok(Self {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        })
    }
}

/// Finds the digest of `file_name` (a base name) in a checksum file's text. A body that is a
/// single bare digest is taken as the digest of whatever file it accompanies.
pub fn find_digest(text: &str, file_name: &str) -> Result<ExpectedDigest, ChecksumError> {
    let wanted = base_name(file_name);
    let digest = |algorithm: Option<Algorithm>, hex: &str| {
        let algorithm = algorithm.or_else(|| Algorithm::from_hex_len(hex.len()))?;
        (is_hex(hex) && hex.len() == algorithm.hex_len()).then(|| ExpectedDigest {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        })
    };
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if let [only] = tokens.as_slice()
        && let Some(d) = digest(None, only)
    {
        return Ok(d);
    }
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        // BSD: `SHA256 (file) = hex`
        if let Some((tag, rest)) = line.split_once(" (")
            && let Some((name, hex)) = rest.rsplit_once(") = ")
            && base_name(name) == wanted
            && let Some(d) = digest(
                Some(
                    Algorithm::from_name(tag)
                        .ok_or_else(|| ChecksumError::Malformed(line.to_owned()))?,
                ),
                hex.trim(),
            )
        {
            return Ok(d);
        }
        // GNU: `hex  file` or `hex *file`
        if let Some((hex, name)) = line.split_once(char::is_whitespace) {
            let name = name.trim_start().trim_start_matches('*');
            if base_name(name) == wanted
                && let Some(d) = digest(None, hex)
            {
                return Ok(d);
            }
        }
    }
    Err(ChecksumError::NotListed(wanted.to_owned()))
}

fn base_name(path: &str) -> &str {
    let path = path.trim().trim_start_matches("./");
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: &str = "7d6355852aeb6dbcd191bcda7cd74f1536cfe5cbf8a10495a7283a8396e4b75b";

    #[test]
    fn every_checksum_file_format() {
        let file = "jammy-server-cloudimg-amd64.img";
        let cases = [
            format!("{SHA256}  {file}\n"), // GNU
            format!(
                "0000000000000000000000000000000000000000000000000000000000000000 *other.img\n{SHA256} *{file}\n"
            ), // GNU binary (Ubuntu SHA256SUMS)
            format!("SHA256 ({file}) = {SHA256}\n"), // BSD
            format!("{SHA256}\n"),         // bare digest sidecar
            format!("# comment\n{}  ./{file}\n", SHA256.to_uppercase()), // upper case, ./ path
        ];
        for text in cases {
            let d = find_digest(&text, &format!("https://host/path/{file}")).unwrap();
            assert_eq!(
                (d.algorithm, d.hex.as_str()),
                (Algorithm::Sha256, SHA256),
                "{text}"
            );
        }
    }

    #[test]
    fn sha512_and_md5_by_length_and_tag() {
        let sha512 = "a".repeat(128);
        assert_eq!(
            find_digest(&format!("{sha512}  x.qcow2\n"), "x.qcow2")
                .unwrap()
                .algorithm,
            Algorithm::Sha512
        );
        let md5 = find_digest(
            "MD5 (cirros.img) = 0123456789abcdef0123456789abcdef\n",
            "cirros.img",
        )
        .unwrap();
        assert_eq!(md5.algorithm, Algorithm::Md5);
        assert!(md5.algorithm.is_weak());
    }

    #[test]
    fn a_file_not_listed_is_an_error() {
        let err = find_digest(&format!("{SHA256}  other.img\n"), "mine.img").unwrap_err();
        assert_eq!(err, ChecksumError::NotListed("mine.img".to_owned()));
    }

    #[test]
    fn definition_digests() {
        assert_eq!(
            ExpectedDigest::parse(&format!("sha256:{SHA256}"))
                .unwrap()
                .algorithm,
            Algorithm::Sha256
        );
        assert!(matches!(
            ExpectedDigest::parse("sha256:abc"),
            Err(ChecksumError::Length { .. })
        ));
        assert!(matches!(
            ExpectedDigest::parse("crc32:abcd"),
            Err(ChecksumError::Malformed(_))
        ));
        assert!(matches!(
            ExpectedDigest::parse(SHA256),
            Err(ChecksumError::Malformed(_))
        ));
    }
}
