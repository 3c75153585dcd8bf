//! Selector routing with the reference's `RespondMux` semantics.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::rpc::handler::{BoxFuture, Handler};
use crate::rpc::{Call, Responder};

/// Normalizes a selector as the reference does: empty becomes `/`, a leading `/` is added, and
/// every `.` becomes `/` (`a.b` → `/a/b`).
pub fn clean_selector(selector: &str) -> String {
    clean_selector_cow(selector).into_owned()
}

/// [`clean_selector`], borrowing `selector` when it is clean already (the common case).
pub(crate) fn clean_selector_cow(selector: &str) -> std::borrow::Cow<'_, str> {
    if selector.starts_with('/') && !selector.contains('.') {
        return std::borrow::Cow::Borrowed(selector);
    }
    let mut s = String::with_capacity(selector.len() + 1);
    if !selector.starts_with('/') {
        s.push('/');
    }
    s.extend(selector.chars().map(|c| if c == '.' { '/' } else { c }));
    std::borrow::Cow::Owned(s)
}

/// Registration refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// The (normalized) pattern already has a handler.
    #[error("rpc: multiple registrations for {0}")]
    Duplicate(String),
}

#[derive(Clone)]
struct Entry {
    pattern: String,
    target: Target,
}

/// What a pattern routes to: a handler, or a mux that routes the rest of the selector.
#[derive(Clone)]
enum Target {
    Handler(Arc<dyn Handler>),
    Mux(Arc<RespondMux>),
}

impl Target {
    fn handler(&self) -> Arc<dyn Handler> {
        match self {
            Target::Handler(h) => h.clone(),
            Target::Mux(m) => m.clone(),
        }
    }
}

#[derive(Default)]
struct Routes {
    exact: HashMap<String, Entry>,
    /// Patterns ending in `/`, longest first.
    prefixes: Vec<Entry>,
}

/// Routes calls to handlers by selector, like the reference's `RespondMux` (and Go's
/// `net/http` mux): an exact match wins; otherwise the longest registered pattern ending in `/`
/// that prefixes the selector; a pattern bound to another `RespondMux` hands it the rest of
/// the selector. The pattern `""` (that is `/`) is the default handler. Unknown selectors
/// answer `not found: <selector>`.
///
/// ```
/// use qtalk::rpc::{func, Call, RespondMux};
/// let mux = RespondMux::new();
/// mux.handle("Upper", func(|_c: Call, (s,): (String,)| async move {
///     Ok::<_, String>(s.to_uppercase())
/// })).unwrap();
/// assert!(mux.lookup("/Upper").is_some());
/// assert!(mux.lookup("Lower").is_none());
/// ```
#[derive(Default)]
pub struct RespondMux {
    routes: RwLock<Routes>,
}

impl std::fmt::Debug for RespondMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let mut patterns: Vec<&String> = routes.exact.keys().collect();
        patterns.sort();
        f.debug_struct("RespondMux")
            .field("patterns", &patterns)
            .finish()
    }
}

impl RespondMux {
    /// An empty mux.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` under `pattern` (normalized). A `RespondMux` (or an
    /// `Arc<RespondMux>`) given here is mounted as by [`RespondMux::mount`]. Refuses a pattern
    /// that is already registered.
    pub fn handle<H: Handler>(&self, pattern: &str, handler: H) -> Result<(), MuxError> {
        let any: Box<dyn std::any::Any> = Box::new(handler);
        let any = match any.downcast::<RespondMux>() {
            Ok(mux) => return self.mount(pattern, *mux),
            Err(other) => other,
        };
        let any = match any.downcast::<Arc<RespondMux>>() {
            Ok(mux) => return self.mount(pattern, *mux),
            Err(other) => other,
        };
        match any.downcast::<H>() {
            Ok(h) => self.insert(pattern, Target::Handler(Arc::new(*h))),
            Err(_) => unreachable!("the value is an H"),
        }
    }

    /// [`RespondMux::handle`] for a shared handler (never taken for a sub-mux: use
    /// [`RespondMux::mount`] for those).
    pub fn handle_arc(&self, pattern: &str, handler: Arc<dyn Handler>) -> Result<(), MuxError> {
        self.insert(pattern, Target::Handler(handler))
    }

    /// Mounts `mux` under `pattern` (normalized, with a trailing `/`): calls whose selector
    /// starts with it are routed by `mux` on the rest of the selector, as the reference does.
    pub fn mount(&self, pattern: &str, mux: impl Into<Arc<RespondMux>>) -> Result<(), MuxError> {
        let mut pattern = clean_selector(pattern);
        if !pattern.ends_with('/') {
            pattern.push('/');
        }
        self.insert(&pattern, Target::Mux(mux.into()))
    }

    fn insert(&self, pattern: &str, target: Target) -> Result<(), MuxError> {
        let pattern = clean_selector(pattern);
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if routes.exact.contains_key(&pattern) {
            return Err(MuxError::Duplicate(pattern));
        }
        let entry = Entry {
            pattern: pattern.clone(),
            target,
        };
        if pattern.ends_with('/') {
            let at = routes
                .prefixes
                .iter()
                .position(|e| e.pattern.len() < pattern.len())
                .unwrap_or(routes.prefixes.len());
            routes.prefixes.insert(at, entry.clone());
        }
        routes.exact.insert(pattern, entry);
        Ok(())
    }

    /// Unregisters the handler for `selector` (normalized) and returns it.
    pub fn remove(&self, selector: &str) -> Option<Arc<dyn Handler>> {
        let selector = clean_selector(selector);
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let entry = routes.exact.remove(&selector)?;
        routes.prefixes.retain(|e| e.pattern != selector);
        Some(entry.target.handler())
    }

    /// The handler `selector` routes to, and the pattern it matched.
    pub fn lookup(&self, selector: &str) -> Option<(Arc<dyn Handler>, String)> {
        self.find(selector, |e| e.pattern.clone())
    }

    /// The handler of `selector`, without its pattern.
    pub(crate) fn route(&self, selector: &str) -> Option<Arc<dyn Handler>> {
        self.find(selector, |_| ()).map(|(h, ())| h)
    }

    fn find<T>(
        &self,
        selector: &str,
        pattern: impl Fn(&Entry) -> T + Copy,
    ) -> Option<(Arc<dyn Handler>, T)> {
        let selector = clean_selector_cow(selector);
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = routes.exact.get(&*selector) {
            return Some((e.target.handler(), pattern(e)));
        }
        for e in &routes.prefixes {
            if let Some(rest) = selector.strip_prefix(e.pattern.as_str()) {
                return match &e.target {
                    Target::Mux(sub) => sub.find(rest, pattern),
                    Target::Handler(h) => Some((h.clone(), pattern(e))),
                };
            }
        }
        None
    }
}

impl Handler for RespondMux {
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()> {
        match self.route(call.selector()) {
            Some(h) => h.respond(responder, call),
            None => {
                let msg = format!("not found: {}", call.selector());
                Box::pin(async move {
                    let _ = responder.error(msg).await;
                })
            }
        }
    }
}
