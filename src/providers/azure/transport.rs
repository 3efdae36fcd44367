//! The HTTP transport of the Azure SDK pipeline, on the `reqwest` 0.12 + rustls (ring) client the
//! rest of secretsync already uses.
//!
//! The SDK's built-in transport is reqwest 0.13 with aws-lc-rs; plugging our own keeps one TLS stack
//! in the binary and gives us what the built-in one does not offer: the store's CA bundle added to
//! the system / `SSL_CERT_FILE` roots, short connect and request timeouts, a bound on body sizes,
//! and no redirects (a redirect would carry the bearer token to another host). `HTTPS_PROXY` /
//! `NO_PROXY` are honoured by reqwest's system proxy support.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::{Error, ErrorKind};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{AsyncRawResponse, HttpClient, Method, Request, StatusCode};

use crate::providers::ProviderError;

/// How a request refused by the bearer-origin rule fails (matched by `classify`).
pub const FOREIGN_ORIGIN: &str = "refusing to send the vault's access token to";

/// Largest response body read (Key Vault values are at most 25 KiB; list pages are small): the
/// shared answer limit, cut off while reading.
pub const MAX_BODY: usize = crate::providers::MAX_ANSWER_BYTES;

/// How an answer cut off at [`MAX_BODY`] fails (matched by `classify`).
pub const TOO_LARGE: &str = "larger than the answer limit of";

/// The transport: one pooled client per store.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    http: reqwest::Client,
    /// The only origin (host, port) a request carrying an `Authorization` header may go to: the
    /// vault's. The SDK's pager follows a listing's absolute `nextLink` wherever it points, with the
    /// vault token attached; a page naming another host is refused instead.
    bearer_origin: Option<(String, u16)>,
}

impl ReqwestTransport {
    /// Builds the client: system and `SSL_CERT_FILE` roots plus `extra_ca_pem`, if any.
    pub fn new(
        extra_ca_pem: Option<&[u8]>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let invalid = |message: String| ProviderError::InvalidConfig { message };
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("secretsync/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| invalid("azureKeyVault.caBundle is not valid PEM".into()))?;
            if certs.is_empty() {
                return Err(invalid(
                    "azureKeyVault.caBundle holds no certificate".into(),
                ));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| invalid(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            bearer_origin: None,
        })
    }

    /// Sends bearer tokens to `url`'s origin only (see [`ReqwestTransport`]).
    pub fn bearer_only_to(mut self, url: &azure_core::http::Url) -> Self {
        self.bearer_origin = origin(url);
        self
    }
}

fn origin(url: &azure_core::http::Url) -> Option<(String, u16)> {
    Some((
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}

fn method(m: Method) -> Option<reqwest::Method> {
    Some(match m {
        Method::Delete => reqwest::Method::DELETE,
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Patch => reqwest::Method::PATCH,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        _ => return None,
    })
}

#[async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url().clone();
        if let Some(allowed) = &self.bearer_origin
            && request
                .headers()
                .get_optional_str(&HeaderName::from_static("authorization"))
                .is_some()
            && origin(&url).as_ref() != Some(allowed)
        {
            return Err(Error::with_message(
                ErrorKind::Other,
                format!(
                    "{FOREIGN_ORIGIN} {:?}: the vault pointed outside itself (nextLink)",
                    url.host_str().unwrap_or_default()
                ),
            ));
        }
        let m = method(request.method())
            .ok_or_else(|| Error::with_message(ErrorKind::Other, "unsupported HTTP method"))?;
        let mut req = self.http.request(m, url.as_str());
        for (name, value) in request.headers().iter() {
            let mut hv = reqwest::header::HeaderValue::from_str(value.as_str()).map_err(|_| {
                Error::with_message(
                    ErrorKind::Other,
                    format!("header {} is not a valid header value", name.as_str()),
                )
            })?;
            if name.as_str().eq_ignore_ascii_case("authorization") {
                hv.set_sensitive(true);
            }
            req = req.header(name.as_str(), hv);
        }
        match request.body() {
            azure_core::http::Body::Bytes(b) => {
                if !b.is_empty() {
                    req = req.body(b.to_vec());
                }
            }
            azure_core::http::Body::SeekableStream(_) => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "streaming request bodies are not supported",
                ));
            }
        }
        let mut resp = req.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            // The URL (no values, no tokens) names the call; the cause says why.
            Error::with_message(
                kind,
                format!(
                    "{what}: {} {}",
                    url.path(),
                    crate::providers::error_chain(&e.without_url())
                ),
            )
        })?;
        let status = StatusCode::from(resp.status().as_u16());
        let mut headers: HashMap<HeaderName, HeaderValue> = HashMap::new();
        for (k, v) in resp.headers() {
            if let Ok(v) = v.to_str() {
                headers.insert(
                    HeaderName::from(k.as_str().to_owned()),
                    HeaderValue::from(v.to_owned()),
                );
            }
        }
        // Read the whole body here (bounded), so a cut connection is a transport error (`Io`, retried
        // later) and never a truncated document handed to the JSON parser.
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > MAX_BODY {
                        return Err(Error::with_message(
                            ErrorKind::DataConversion,
                            format!("response of {} {TOO_LARGE} {MAX_BODY} bytes", url.path()),
                        ));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => {
                    zeroize::Zeroize::zeroize(&mut body);
                    return Err(Error::with_message(
                        ErrorKind::Io,
                        format!("reading the answer of {}: {}", url.path(), e.without_url()),
                    ));
                }
            }
        }
        let bytes = azure_core::Bytes::from(body);
        let stream: azure_core::http::response::PinnedStream =
            Box::pin(futures::stream::once(async move { Ok(bytes) }));
        Ok(AsyncRawResponse::new(
            status,
            Headers::from(headers),
            stream,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str, bearer: bool) -> Request {
        let mut r = Request::new(azure_core::http::Url::parse(url).unwrap(), Method::Get);
        if bearer {
            r.insert_header("authorization", "Bearer tok-abc");
        }
        r
    }

    #[tokio::test]
    async fn the_vault_token_goes_to_the_vault_only() {
        let vault = azure_core::http::Url::parse("https://127.0.0.1:9/").unwrap();
        let t = ReqwestTransport::new(None, Duration::from_secs(1), Duration::from_secs(1))
            .unwrap()
            .bearer_only_to(&vault);
        // A nextLink to another host (or port) with the token attached: refused before any I/O.
        for other in [
            "https://elsewhere.example/secrets?api-version=2025-07-01",
            "https://127.0.0.1:10/secrets",
        ] {
            let e = t.execute_request(&request(other, true)).await.unwrap_err();
            assert!(e.to_string().contains("refusing to send"), "{e}");
            assert!(!e.to_string().contains("tok-abc"));
        }
        // To the vault itself the request goes out (and fails to connect: nothing listens there).
        let e = t
            .execute_request(&request("https://127.0.0.1:9/secrets/x", true))
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("refusing"), "{e}");
        // Without a token, other hosts are not this guard's business (the token endpoint).
        let e = t
            .execute_request(&request("https://127.0.0.1:10/token", false))
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("refusing"), "{e}");
    }
}
