//! Checking values before they are written (pure): the `validate` block of a Secret key
//! ([`check`]) and the built-in rules of Secret types ([`builtin`]): `kubernetes.io/tls` (a PEM
//! certificate chain, leaf first, and a private key whose public key is the leaf's) and
//! `kubernetes.io/dockerconfigjson` (JSON with an `auths` object).
//!
//! A failure names the Secret key and the rule, never the value: no bytes of it, no prefix, no
//! property name found in it (only the configured required names). Certificates are public, so
//! their subject, SANs and `notAfter` are reported ([`CertInfo`]): the earliest `notAfter` feeds
//! expiry like provider metadata does.

pub mod der;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::{ValueType, ValueValidation, syntax};
use crate::value::SecretBytes;

/// The Secret type whose keys `tls.crt` and `tls.key` are checked.
pub const TLS_TYPE: &str = "kubernetes.io/tls";
/// The Secret type whose key `.dockerconfigjson` is checked.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// How many SANs of a certificate are reported.
pub const MAX_SANS: usize = 10;
/// Longest subject (and SAN) reported, in characters.
const MAX_NAME_CHARS: usize = 256;

/// A value that fails its checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidateError {
    /// The value breaks a rule (the message names the key and the rule, never the value).
    #[error("Secret key {key:?} fails {rule}: {why}")]
    Invalid {
        /// The Secret key.
        key: String,
        /// The rule, e.g. `validate.type json` or `the kubernetes.io/tls rule`.
        rule: String,
        /// What is wrong, without the value.
        why: String,
    },
    /// `validate.pattern` does not compile (the spec's fault, normally caught by validation).
    #[error("Secret key {key:?}: validate.pattern: {message}")]
    Pattern {
        /// The Secret key.
        key: String,
        /// The compiler's complaint.
        message: String,
    },
}

impl ValidateError {
    /// The Secret key at fault.
    pub fn key(&self) -> &str {
        match self {
            Self::Invalid { key, .. } | Self::Pattern { key, .. } => key,
        }
    }
}

/// Public facts of the certificates of one Secret key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The first certificate's subject (RFC 4514, cut at 256 characters).
    pub subject: String,
    /// The first certificate's SANs (at most [`MAX_SANS`]).
    pub sans: Vec<String>,
    /// The earliest `notAfter` of the certificates.
    pub not_after: DateTime<Utc>,
    /// How many certificates.
    pub count: u32,
}

fn invalid(key: &str, rule: impl Into<String>, why: impl Into<String>) -> ValidateError {
    ValidateError::Invalid {
        key: key.to_string(),
        rule: rule.into(),
        why: why.into(),
    }
}

/// Checks `value` of Secret key `key` against its `validate` block. Returns the certificate facts
/// for `pem-certificate` and `pem-bundle` values.
pub fn check(
    key: &str,
    value: &SecretBytes,
    v: &ValueValidation,
) -> Result<Option<CertInfo>, ValidateError> {
    let bytes = value.expose();
    let mut facts = None;
    if let Some(t) = v.type_ {
        let rule = format!("validate.type {}", t.as_str());
        let result = match t {
            ValueType::String => utf8(bytes).map(|_| None),
            ValueType::Json => json(bytes).map(|_| None),
            ValueType::Base64 => base64(bytes).map(|_| None),
            ValueType::PemCertificate => chain(bytes).map(|c| Some(c.info)),
            ValueType::PemBundle => bundle(bytes).map(Some),
            ValueType::PemPrivateKey => private_key(bytes).map(|_| None),
        };
        facts = result.map_err(|why| invalid(key, rule, why))?;
    }
    if let Some(min) = v.min_length
        && bytes.len() < min as usize
    {
        return Err(invalid(
            key,
            format!("validate.minLength {min}"),
            format!("the value has {} bytes", bytes.len()),
        ));
    }
    if let Some(max) = v.max_length
        && bytes.len() > max as usize
    {
        return Err(invalid(
            key,
            format!("validate.maxLength {max}"),
            format!("the value has {} bytes", bytes.len()),
        ));
    }
    if let Some(p) = &v.pattern {
        let re = syntax::value_pattern(p).map_err(|message| ValidateError::Pattern {
            key: key.to_string(),
            message,
        })?;
        if !re.is_match(bytes) {
            return Err(invalid(
                key,
                "validate.pattern",
                "the value does not match the pattern (anchored: the whole value must match)",
            ));
        }
    }
    if !v.required_properties.is_empty() {
        let rule = "validate.requiredProperties";
        let doc = json(bytes).map_err(|why| invalid(key, rule, why))?;
        let serde_json::Value::Object(map) = doc else {
            return Err(invalid(key, rule, "the value is not a JSON object"));
        };
        let missing: Vec<&str> = v
            .required_properties
            .iter()
            .filter(|p| !map.contains_key(p.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(invalid(
                key,
                rule,
                format!("missing top-level propert(ies) {missing:?}"),
            ));
        }
    }
    Ok(facts)
}

/// The built-in rules of Secret type `type_` over the whole data. Returns the certificate facts of
/// the keys it understood (`tls.crt`).
pub fn builtin(
    type_: &str,
    data: &BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, CertInfo>, ValidateError> {
    let mut facts = BTreeMap::new();
    match type_ {
        TLS_TYPE => {
            let rule = "the kubernetes.io/tls rule";
            let get = |k: &str| {
                data.get(k).ok_or_else(|| {
                    invalid(
                        k,
                        rule,
                        "the key is missing (tls.crt and tls.key are required)",
                    )
                })
            };
            let crt = get("tls.crt")?;
            let key = get("tls.key")?;
            let chain = chain(crt.expose()).map_err(|why| invalid("tls.crt", rule, why))?;
            let public = private_key(key.expose()).map_err(|why| invalid("tls.key", rule, why))?;
            let leaf = spki_public(&chain.leaf_spki).ok_or_else(|| {
                invalid(
                    "tls.crt",
                    rule,
                    "the leaf certificate's public key is of an unsupported kind",
                )
            })?;
            match public {
                Some(p) if p == leaf => {}
                Some(_) => {
                    return Err(invalid(
                        "tls.key",
                        rule,
                        "its public key does not match the leaf certificate of tls.crt",
                    ));
                }
                None => {
                    return Err(invalid(
                        "tls.key",
                        rule,
                        "its public key cannot be derived (unsupported algorithm, or a SEC1 key without its public key), so it cannot be matched with tls.crt",
                    ));
                }
            }
            facts.insert("tls.crt".to_string(), chain.info);
        }
        DOCKER_CONFIG_JSON_TYPE => {
            let k = ".dockerconfigjson";
            let rule = "the kubernetes.io/dockerconfigjson rule";
            let v = data
                .get(k)
                .ok_or_else(|| invalid(k, rule, "the key is missing"))?;
            let doc = json(v.expose()).map_err(|why| invalid(k, rule, why))?;
            if !doc.get("auths").is_some_and(serde_json::Value::is_object) {
                return Err(invalid(k, rule, "the value has no \"auths\" object"));
            }
        }
        _ => {}
    }
    Ok(facts)
}

fn utf8(bytes: &[u8]) -> Result<(), String> {
    std::str::from_utf8(bytes).map(|_| ()).map_err(|e| {
        format!(
            "not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )
    })
}

fn json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        // Only the category and the position: serde_json's own text can quote the input.
        let what = match e.classify() {
            Category::Eof => "it ends early",
            Category::Syntax => "syntax error",
            Category::Data | Category::Io => "unreadable",
        };
        format!(
            "not valid JSON ({what} at line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

fn base64(bytes: &[u8]) -> Result<(), String> {
    use base64::Engine;
    let compact: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map(|_| ())
        .map_err(|_| "not valid base64 (standard alphabet, padded)".to_string())
}

/// PEM labels that may be named in messages (anything else could be part of a value).
const KNOWN_LABELS: &[&str] = &[
    "CERTIFICATE",
    "TRUSTED CERTIFICATE",
    "X509 CRL",
    "CERTIFICATE REQUEST",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "PUBLIC KEY",
    "RSA PUBLIC KEY",
    "EC PARAMETERS",
];

fn label_of(p: &pem::Pem) -> String {
    match KNOWN_LABELS.iter().find(|l| **l == p.tag()) {
        Some(l) => format!("a PEM {l} block"),
        None => "a PEM block of an unknown kind".to_string(),
    }
}

fn pem_blocks(bytes: &[u8]) -> Result<Vec<pem::Pem>, String> {
    let blocks = pem::parse_many(bytes).map_err(|_| "not valid PEM".to_string())?;
    if blocks.is_empty() {
        return Err("holds no PEM block".into());
    }
    Ok(blocks)
}

/// The DER of each certificate of a PEM value (only CERTIFICATE blocks allowed).
fn cert_ders(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem_blocks(bytes)?;
    let mut out = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        if b.tag() != "CERTIFICATE" {
            return Err(format!(
                "PEM block {} is {}, not a CERTIFICATE",
                i + 1,
                label_of(b)
            ));
        }
        out.push(b.contents().to_vec());
    }
    Ok(out)
}

fn parse_cert(
    i: usize,
    der: &[u8],
) -> Result<x509_parser::certificate::X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], c)) => Ok(c),
        Ok(_) => Err(format!("certificate {} has trailing bytes", i + 1)),
        Err(_) => Err(format!(
            "certificate {} is not a valid X.509 certificate",
            i + 1
        )),
    }
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_NAME_CHARS).collect()
}

fn info(certs: &[x509_parser::certificate::X509Certificate<'_>]) -> Result<CertInfo, String> {
    let first = certs.first().ok_or("holds no certificate")?;
    let mut not_after: Option<i64> = None;
    for c in certs {
        let t = c.validity().not_after.timestamp();
        not_after = Some(not_after.map_or(t, |n| n.min(t)));
    }
    let not_after = not_after
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .ok_or("a certificate's notAfter is out of range")?;
    let sans = match first.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(san)
            .take(MAX_SANS)
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return Err("certificate 1 has a malformed subjectAltName extension".into()),
    };
    Ok(CertInfo {
        subject: cut(&first.subject().to_string()),
        sans,
        not_after,
        count: u32::try_from(certs.len()).unwrap_or(u32::MAX),
    })
}

fn san(n: &x509_parser::extensions::GeneralName<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    Some(match n {
        GeneralName::DNSName(s) => format!("DNS:{}", cut(s)),
        GeneralName::RFC822Name(s) => format!("email:{}", cut(s)),
        GeneralName::URI(s) => format!("URI:{}", cut(s)),
        GeneralName::IPAddress(b) => match b.len() {
            4 => {
                let a: [u8; 4] = (*b).try_into().ok()?;
                format!("IP:{}", std::net::Ipv4Addr::from(a))
            }
            16 => {
                let a: [u8; 16] = (*b).try_into().ok()?;
                format!("IP:{}", std::net::Ipv6Addr::from(a))
            }
            _ => return None,
        },
        _ => return None,
    })
}

/// A certificate chain: its facts and the leaf's SubjectPublicKeyInfo.
struct Chain {
    info: CertInfo,
    leaf_spki: Vec<u8>,
}

/// One or more certificates, leaf first, each issued by the next (by name).
fn chain(bytes: &[u8]) -> Result<Chain, String> {
    let ders = cert_ders(bytes)?;
    let certs = ders
        .iter()
        .enumerate()
        .map(|(i, d)| parse_cert(i, d))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, pair) in certs.windows(2).enumerate() {
        if pair[0].issuer().as_raw() != pair[1].subject().as_raw() {
            return Err(format!(
                "certificate {} is not the issuer of certificate {} (a chain goes leaf first, each certificate followed by its issuer)",
                i + 2,
                i + 1
            ));
        }
    }
    let info = info(&certs)?;
    let leaf_spki = certs
        .first()
        .map(|c| c.public_key().raw.to_vec())
        .unwrap_or_default();
    Ok(Chain { info, leaf_spki })
}

/// One or more certificates in any order.
fn bundle(bytes: &[u8]) -> Result<CertInfo, String> {
    let ders = cert_ders(bytes)?;
    let certs = ders
        .iter()
        .enumerate()
        .map(|(i, d)| parse_cert(i, d))
        .collect::<Result<Vec<_>, _>>()?;
    info(&certs)
}

/// A public key, as compared between a private key and a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    /// RSA modulus and exponent (no leading zeros).
    Rsa(Vec<u8>, Vec<u8>),
    /// An EC point as encoded in SubjectPublicKeyInfo.
    Ec(Vec<u8>),
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
}

/// OID contents: rsaEncryption, id-ecPublicKey, id-Ed25519.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One PEM private key; its public key when it can be derived.
fn private_key(bytes: &[u8]) -> Result<Option<PublicKey>, String> {
    let blocks = pem_blocks(bytes)?;
    let mut keys = blocks.iter().filter(|b| b.tag() != "EC PARAMETERS");
    let (Some(block), None) = (keys.next(), keys.next()) else {
        return Err("must hold exactly one PEM private key block".into());
    };
    let bad = |what: &str| format!("the {what} private key is malformed");
    match block.tag() {
        "PRIVATE KEY" => pkcs8(block.contents()).ok_or_else(|| bad("PKCS#8")),
        "RSA PRIVATE KEY" => pkcs1(block.contents())
            .map(Some)
            .ok_or_else(|| bad("PKCS#1 RSA")),
        "EC PRIVATE KEY" => sec1(block.contents()).ok_or_else(|| bad("SEC1 EC")),
        "ENCRYPTED PRIVATE KEY" => {
            Err("is an encrypted private key (Secrets hold unencrypted keys)".into())
        }
        _ => Err(format!("is {}, not a private key", label_of(block))),
    }
}

/// PKCS#8: `Some(None)` for a well-formed key whose public key cannot be derived here.
#[allow(clippy::option_option)]
fn pkcs8(der: &[u8]) -> Option<Option<PublicKey>> {
    let mut outer = der::Reader(der);
    let mut seq = der::Reader(outer.next(der::SEQUENCE)?);
    if !outer.is_empty() {
        return None;
    }
    let version = seq.next(der::INTEGER)?;
    if version != [0] && version != [1] {
        return None;
    }
    let mut alg = der::Reader(seq.next(der::SEQUENCE)?);
    let oid = alg.next(der::OID)?;
    let inner = seq.next(der::OCTET_STRING)?;
    Some(match oid {
        OID_RSA => Some(pkcs1(inner)?),
        OID_EC => sec1(inner)?,
        OID_ED25519 => {
            let seed = der::Reader(inner).next(der::OCTET_STRING)?;
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).ok()?;
            use ring::signature::KeyPair;
            Some(PublicKey::Ed25519(pair.public_key().as_ref().to_vec()))
        }
        _ => None,
    })
}

/// PKCS#1 RSAPrivateKey: its modulus and public exponent.
fn pkcs1(der: &[u8]) -> Option<PublicKey> {
    let mut outer = der::Reader(der);
    let mut seq = der::Reader(outer.next(der::SEQUENCE)?);
    seq.next(der::INTEGER)?;
    let n = der::unsigned(seq.next(der::INTEGER)?).to_vec();
    let e = der::unsigned(seq.next(der::INTEGER)?).to_vec();
    // d, p, q, dp, dq, qinv
    for _ in 0..6 {
        seq.next(der::INTEGER)?;
    }
    (!n.is_empty() && !e.is_empty()).then_some(PublicKey::Rsa(n, e))
}

/// SEC1 ECPrivateKey: its public key when it carries one.
#[allow(clippy::option_option)]
fn sec1(der: &[u8]) -> Option<Option<PublicKey>> {
    let mut outer = der::Reader(der);
    let mut seq = der::Reader(outer.next(der::SEQUENCE)?);
    if seq.next(der::INTEGER)? != [1] {
        return None;
    }
    if seq.next(der::OCTET_STRING)?.is_empty() {
        return None;
    }
    seq.optional(der::CONTEXT_0);
    Some(match seq.optional(der::CONTEXT_1) {
        Some(body) => {
            let point = der::bits(der::Reader(body).next(der::BIT_STRING)?)?;
            Some(PublicKey::Ec(point.to_vec()))
        }
        None => None,
    })
}

/// The public key of a SubjectPublicKeyInfo.
fn spki_public(spki: &[u8]) -> Option<PublicKey> {
    let mut outer = der::Reader(spki);
    let mut seq = der::Reader(outer.next(der::SEQUENCE)?);
    let mut alg = der::Reader(seq.next(der::SEQUENCE)?);
    let oid = alg.next(der::OID)?;
    let key = der::bits(seq.next(der::BIT_STRING)?)?;
    match oid {
        OID_RSA => {
            let mut r = der::Reader(key);
            let mut s = der::Reader(r.next(der::SEQUENCE)?);
            let n = der::unsigned(s.next(der::INTEGER)?).to_vec();
            let e = der::unsigned(s.next(der::INTEGER)?).to_vec();
            Some(PublicKey::Rsa(n, e))
        }
        OID_EC => Some(PublicKey::Ec(key.to_vec())),
        OID_ED25519 => Some(PublicKey::Ed25519(key.to_vec())),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
