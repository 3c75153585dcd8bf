//! [`AuthLayer`]: calls from callers it does not accept are refused before any handler runs.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::rpc::handler::BoxFuture;
use crate::rpc::{Incoming, Outcome};

/// Who an [`AuthLayer`] accepted, attached to the call for its handler
/// ([`Call::extensions`](crate::rpc::Call::extensions)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Principal {
    /// A token from the metadata: its position in the list given to the layer (never its
    /// value).
    Token(usize),
    /// The certificate the peer presented in the TLS or QUIC handshake (DER).
    Certificate(qtalk_mux::Certificate),
    /// A Unix socket peer's user id.
    UnixUser(u32),
    /// Whatever a custom rule returned.
    Named(String),
}

/// A rule: the principal it accepts, or why not.
type Rule = Arc<dyn Fn(&Incoming) -> Result<Arc<Principal>, String> + Send + Sync>;

/// A tower layer that lets a call through only when one of its rules accepts the caller:
/// a token in the call's metadata, the client certificate of a mutual-TLS or QUIC
/// connection, a Unix socket peer's uid, or a rule of your own. Otherwise the call is
/// answered `unauthenticated: <why>` and its handler never runs. The accepted
/// [`Principal`] is attached to the call.
///
/// ```
/// use qtalk::rpc::layer::AuthLayer;
/// // A token in metadata key `authorization` (`secret`, or `Bearer secret`), or any
/// // client certificate the TLS handshake verified.
/// let auth = AuthLayer::bearer_token("authorization", ["secret"]).or_client_certificate();
/// # let _ = auth;
/// ```
#[derive(Clone, Default)]
pub struct AuthLayer {
    rules: Vec<(String, Rule)>,
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.rules.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("AuthLayer").field("rules", &names).finish()
    }
}

/// Compares without returning early at the first difference (the time taken does not tell
/// how much of a guess was right).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Token positions whose principal a thread keeps.
const TOKENS_PER_THREAD: usize = 16;

thread_local! {
    /// Per thread, the principal of each token position: shared by the calls of one thread
    /// (one shared by every thread would have its reference count bounce between the cores
    /// serving calls, and a fresh one per call costs an allocation).
    static TOKEN_PRINCIPALS: std::cell::RefCell<Vec<Arc<Principal>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The principal of the token at position `i`.
fn token_principal(i: usize) -> Arc<Principal> {
    if i >= TOKENS_PER_THREAD {
        return Arc::new(Principal::Token(i));
    }
    TOKEN_PRINCIPALS
        .try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            while cache.len() <= i {
                let next = cache.len();
                cache.push(Arc::new(Principal::Token(next)));
            }
            Some(cache[i].clone())
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::new(Principal::Token(i)))
}

impl AuthLayer {
    /// A layer without rules: it refuses every call until one is added.
    pub fn new() -> AuthLayer {
        AuthLayer::default()
    }

    /// A layer accepting calls whose metadata `key` holds one of `tokens`, as is or after
    /// `Bearer `. The [`Principal::Token`] names the token by its position, never by its
    /// value.
    pub fn bearer_token<I, T>(key: &str, tokens: I) -> AuthLayer
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        AuthLayer::new().or_bearer_token(key, tokens)
    }

    /// Also accepts calls whose metadata `key` holds one of `tokens` (see
    /// [`AuthLayer::bearer_token`]).
    pub fn or_bearer_token<I, T>(self, key: &str, tokens: I) -> AuthLayer
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let key = key.to_string();
        let tokens: Vec<String> = tokens.into_iter().map(Into::into).collect();
        let name = format!("token in metadata {key:?}");
        self.push_rule(name, move |incoming| {
            let Some(sent) = incoming.context().metadata().get(&key) else {
                return Err(format!("no token in metadata {key:?}"));
            };
            let sent = sent.strip_prefix("Bearer ").unwrap_or(sent);
            // Every token is compared, so that the time taken does not tell which matched.
            let mut found = None;
            for (i, t) in tokens.iter().enumerate() {
                if same_secret(t.as_bytes(), sent.as_bytes()) && found.is_none() {
                    found = Some(i);
                }
            }
            match found {
                Some(i) => Ok(token_principal(i)),
                None => Err(format!("invalid token in metadata {key:?}")),
            }
        })
    }

    /// Also accepts calls over connections whose peer presented a certificate that the TLS
    /// or QUIC handshake verified (a server set up with
    /// [`tls::server_config_with_client_auth`](qtalk_mux::tls::server_config_with_client_auth)
    /// verifies them against its CA; one that does not ask presents none).
    pub fn or_client_certificate(self) -> AuthLayer {
        self.or_rule("client certificate", |incoming| {
            match incoming
                .connection()
                .tls()
                .and_then(|t| t.peer_certificate())
            {
                Some(cert) => Ok(Principal::Certificate(cert.clone())),
                None => Err("no client certificate".to_string()),
            }
        })
    }

    /// Also accepts calls over Unix sockets whose peer runs as one of `uids` (as the kernel
    /// reported when it connected).
    pub fn or_unix_uid(self, uids: impl IntoIterator<Item = u32>) -> AuthLayer {
        let uids: Vec<u32> = uids.into_iter().collect();
        self.or_rule("Unix user", move |incoming| {
            match incoming
                .connection()
                .peer_credentials()
                .and_then(|c| c.uid())
            {
                Some(uid) if uids.contains(&uid) => Ok(Principal::UnixUser(uid)),
                Some(uid) => Err(format!("Unix user {uid} not allowed")),
                None => Err("not a Unix socket peer".to_string()),
            }
        })
    }

    /// Also accepts the calls `rule` accepts; its error says why it did not (the caller reads
    /// it after `unauthenticated: `).
    pub fn or_rule<F>(self, name: impl Into<String>, rule: F) -> AuthLayer
    where
        F: Fn(&Incoming) -> Result<Principal, String> + Send + Sync + 'static,
    {
        self.push_rule(name, move |incoming| rule(incoming).map(Arc::new))
    }

    fn push_rule<F>(mut self, name: impl Into<String>, rule: F) -> AuthLayer
    where
        F: Fn(&Incoming) -> Result<Arc<Principal>, String> + Send + Sync + 'static,
    {
        self.rules.push((name.into(), Arc::new(rule)));
        self
    }

    /// The principal the first accepting rule gives, or why none accepted.
    fn check(&self, incoming: &Incoming) -> Result<Arc<Principal>, String> {
        let mut why = Vec::new();
        for (_, rule) in &self.rules {
            match rule(incoming) {
                Ok(p) => return Ok(p),
                Err(e) => why.push(e),
            }
        }
        if why.is_empty() {
            why.push("no credentials are accepted".to_string());
        }
        Err(format!("unauthenticated: {}", why.join("; ")))
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            rules: Arc::new(self.clone()),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    rules: Arc<AuthLayer>,
}

impl<S> tower_service::Service<Incoming> for Auth<S>
where
    S: tower_service::Service<Incoming, Response = Outcome>,
    S::Error: Send + 'static,
{
    type Response = Outcome;
    type Error = S::Error;
    type Future = AuthFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Incoming) -> Self::Future {
        match self.rules.check(&req) {
            Ok(principal) => {
                req.call_mut().extensions_mut().insert_shared(principal);
                AuthFuture {
                    state: AuthState::Accepted {
                        inner: self.inner.call(req),
                    },
                }
            }
            Err(why) => {
                tracing::debug!(selector = %req.selector(), reason = %why, "rpc: call refused");
                AuthFuture {
                    state: AuthState::Refused {
                        refusal: Box::pin(async move { Ok(req.refuse(why).await) }),
                    },
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Auth`]: the inner service's (no allocation for accepted calls), or the
    /// refusal.
    pub struct AuthFuture<F, E> {
        #[pin]
        state: AuthState<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = AuthProj]
    enum AuthState<F, E> {
        Accepted { #[pin] inner: F },
        Refused { refusal: BoxFuture<Result<Outcome, E>> },
    }
}

impl<F, E> std::future::Future for AuthFuture<F, E>
where
    F: std::future::Future<Output = Result<Outcome, E>>,
{
    type Output = Result<Outcome, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            AuthProj::Accepted { inner } => inner.poll(cx),
            AuthProj::Refused { refusal } => refusal.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn token_principals() {
        use super::{token_principal, Principal, TOKENS_PER_THREAD};
        assert_eq!(*token_principal(3), Principal::Token(3));
        assert_eq!(*token_principal(0), Principal::Token(0));
        assert!(std::sync::Arc::ptr_eq(
            &token_principal(3),
            &token_principal(3)
        ));
        let far = TOKENS_PER_THREAD + 5;
        assert_eq!(*token_principal(far), Principal::Token(far));
    }

    #[test]
    fn secrets() {
        assert!(same_secret(b"secret", b"secret"));
        assert!(!same_secret(b"secret", b"secreT"));
        assert!(!same_secret(b"secret", b"secrets"));
        assert!(same_secret(b"", b""));
    }
}
