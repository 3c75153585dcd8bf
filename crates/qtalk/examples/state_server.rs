//! State synchronization: clients `Join` with a name and receive the list of joined users
//! through a `state` callback whenever it changes; `Leave` removes them. A client whose
//! callback fails (it went away) is dropped.
//!
//! `cargo run -p qtalk --example state_server [ADDR]` (default 127.0.0.1:9998), then run
//! `state_client NAME` a few times.

use std::sync::{Arc, Mutex};

use qtalk::codec::Json;
use qtalk::rpc::{func, Call, Caller, RespondMux, Server};

#[derive(Default)]
struct Room {
    /// Joined users and the caller that reaches each one.
    users: Mutex<Vec<(String, Caller)>>,
}

impl Room {
    /// Sends the current user list to everyone; drops those who do not answer.
    async fn broadcast(&self) {
        let (names, members): (Vec<String>, Vec<(String, Caller)>) = {
            let users = self.users.lock().unwrap();
            (
                users.iter().map(|(n, _)| n.clone()).collect(),
                users.clone(),
            )
        };
        for (name, caller) in members {
            if caller.call::<_, ()>("state", &[&names]).await.is_err() {
                println!("dropping {name}: callback failed");
                self.users.lock().unwrap().retain(|(n, _)| n != &name);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9998".into());
    let room = Arc::new(Room::default());

    let mux = RespondMux::new();
    let r = room.clone();
    mux.handle(
        "Join",
        func(move |call: Call, (name,): (String,)| {
            let room = r.clone();
            async move {
                println!("{name} joined");
                room.users
                    .lock()
                    .unwrap()
                    .push((name, call.caller().clone()));
                // Answer first, then push the new state to everyone.
                tokio::spawn(async move { room.broadcast().await });
                Ok::<_, String>(())
            }
        }),
    )?;
    let r = room.clone();
    mux.handle(
        "Leave",
        func(move |_call: Call, (name,): (String,)| {
            let room = r.clone();
            async move {
                println!("{name} left");
                room.users.lock().unwrap().retain(|(n, _)| n != &name);
                tokio::spawn(async move { room.broadcast().await });
                Ok::<_, String>(())
            }
        }),
    )?;

    let listener = qtalk::mux::Listener::bind_tcp(addr, Default::default()).await?;
    println!("listening on {}", listener.local_addr()?);
    Server::new(mux, Json).serve(listener).await?;
    Ok(())
}
