//! A TLS-terminating TCP forwarder (feature `tls-forward`): serves a [`Leaf`] certificate on
//! 127.0.0.1 and passes the decrypted bytes to a plain-TCP upstream. For tests in which a client must
//! verify a real chain (a host name, a CA from its trust bundle) in front of a plain-HTTP peer.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::tls::Leaf;

/// A running forwarder; stops when dropped.
pub struct TlsForwarder {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsForwarder {
    /// Listens on a free port of 127.0.0.1 with `leaf` (its certificate only: the client must know
    /// the CA) and forwards every connection to `upstream` (`host:port`).
    pub async fn start(leaf: &Leaf, upstream: &str) -> anyhow::Result<TlsForwarder> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let upstream = upstream.to_string();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let Ok(mut up) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        Ok(TlsForwarder { port, task })
    }
}
