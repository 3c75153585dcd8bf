//! Callbacks passed as values: the reference's function pointers (`exp.Ptr`).
//!
//! A callback travels as `{"$fnptr": "<id>"}`. The side that sends it registers a handler under
//! `<id>` on the session it sends it over; the side that receives it calls that selector back on
//! the same session.
//!
//! Ids are 128 bits from the operating system's random number generator, and a callback is
//! reachable only from the session it was registered on: a peer that learns another session's
//! id cannot invoke it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::rpc::{Caller, Error, Handler};

/// A reference to a handler on the peer that sent it, encoded as `{"$fnptr": "<id>"}`.
///
/// Register one with [`Callback::register`] on the [`Caller`] of the session the peer will
/// call it back on (in a handler, [`Call::caller`](crate::rpc::Call::caller)):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use qtalk::rpc::{func, Call, Callback, Caller};
/// let (a, _b) = tokio::io::duplex(1024);
/// let caller = Caller::new(qtalk::mux::Session::new(a, Default::default()), qtalk::codec::Json);
/// let cb = Callback::register(&caller, func(|_c: Call, (n,): (i64,)| async move {
///     Ok::<_, String>(n + 1)
/// }));
/// assert_eq!(cb.id.len(), 32);
/// let json = serde_json::to_string(&cb).unwrap();
/// assert_eq!(json, format!(r#"{{"$fnptr":"{}"}}"#, cb.id));
/// assert!(cb.unregister(&caller));
/// assert!(!cb.unregister(&caller));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Callback {
    /// The selector the handler is registered under.
    #[serde(rename = "$fnptr")]
    pub id: String,
}

impl Callback {
    /// Registers `handler` under a fresh id on the session of `caller`, and returns the
    /// callback to send over that session. Only that session's peer can call it; it stays
    /// registered until [`Callback::unregister`] or the end of the session.
    pub fn register(caller: &Caller, handler: impl Handler) -> Callback {
        let cb = Callback { id: fresh_id() };
        caller.callbacks().insert(cb.id.clone(), Arc::new(handler));
        cb
    }

    /// Removes the callback's handler from the session of `caller`; false when it was not
    /// registered there.
    pub fn unregister(&self, caller: &Caller) -> bool {
        caller.callbacks().remove(&self.id)
    }

    /// Calls the callback on the peer that sent it, through `caller` (normally
    /// [`Call::caller`](crate::rpc::Call::caller) of the call that carried it).
    pub async fn call<A, R>(&self, caller: &Caller, args: &A) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        caller.call(&self.id, args).await
    }
}

/// The callbacks registered on one session, shared by the clones of its [`Caller`].
#[derive(Default)]
pub(crate) struct Callbacks {
    map: Mutex<HashMap<String, Arc<dyn Handler>>>,
    /// How many the map holds, read without the lock: most sessions have none, and every
    /// call served looks here first.
    len: AtomicUsize,
}

impl Callbacks {
    fn insert(&self, id: String, handler: Arc<dyn Handler>) {
        let mut map = self.lock();
        map.insert(id, handler);
        self.len.store(map.len(), Ordering::Release);
    }

    fn remove(&self, id: &str) -> bool {
        let mut map = self.lock();
        let removed = map.remove(id).is_some();
        self.len.store(map.len(), Ordering::Release);
        removed
    }

    /// The handler for a call's (cleaned) selector, when it names a callback of this session.
    pub(crate) fn lookup(&self, selector: &str) -> Option<Arc<dyn Handler>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let id = selector.strip_prefix('/').unwrap_or(selector);
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn Handler>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// 128 random bits from the operating system, as 32 lowercase hex digits.
fn fresh_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator failing is not recoverable in any useful way for an id meant to be
    // unguessable; refuse to hand out a predictable one.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
