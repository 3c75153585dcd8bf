//! `qtalk call`: one call, its reply printed as JSON.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use qtalk::codec::{Codec, Json};
use qtalk::rpc::{CallContext, Error as RpcError, Peer};
use qtalk::Value;
use qtalk_cli::{peer, Failure};

use super::args::CallArgs;
use super::parse_url;

/// Parses `call`'s arguments: each a JSON value, a bare word a string. None → null; otherwise
/// an array of them (positional parameters), except that with `raw` a single one is sent as
/// itself.
fn call_args(args: &[String], raw: bool) -> Result<Value, Failure> {
    let mut values = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        match qtalk::codec::decode::<Value>(&Json, a.as_bytes()) {
            Ok(v) => values.push(v),
            Err(e) => {
                if a.trim_start().starts_with(['{', '[', '"']) {
                    return Err(Failure::Usage(format!(
                        "argument {} is not valid JSON ({}): {a}",
                        i + 1,
                        e.to_string().trim_start_matches("decode: ")
                    )));
                }
                values.push(Value::Text(a.clone()));
            }
        }
    }
    Ok(match values.len() {
        0 => Value::Null,
        1 if raw => values.pop().unwrap_or_default(),
        _ => Value::Array(values),
    })
}

pub(crate) async fn call(a: CallArgs) -> Result<(), Failure> {
    if let Some(target) = qtalk_cli::p2p::parse(&a.url)? {
        return call_p2p(a, target).await;
    }
    if a.dial.via.is_some() {
        return Err(Failure::Usage(
            "--via applies to p2p://NAME URLs only".into(),
        ));
    }
    let target = parse_url(&a.url)?;
    let selector = peer::require_selector(&target)?.to_string();
    let args = call_args(&a.args, a.raw)?;
    let codec = peer::codec_by_name(&a.codec)
        .ok_or_else(|| Failure::Usage(format!("unknown codec {:?}", a.codec)))?;
    let started = tokio::time::Instant::now();
    let session = peer::connect_within(&target.endpoint, &a.dial.settings(), a.timeout).await?;
    let call = Invocation {
        selector: &selector,
        args: &args,
        meta: &a.meta,
        started,
        timeout: a.timeout,
        target: &target.to_string(),
    };
    call_on(session, codec, call).await
}

/// `qtalk call --via quic://RDV p2p://NAME/Selector ARGS`.
async fn call_p2p(a: CallArgs, target: qtalk_cli::p2p::P2pTarget) -> Result<(), Failure> {
    let Some(via) = a.dial.via.clone() else {
        return Err(Failure::Usage(
            "p2p:// URLs need --via quic://HOST:PORT (the rendezvous)".into(),
        ));
    };
    let selector = target.selector.clone().ok_or_else(|| {
        Failure::Usage(format!(
            "the URL names no selector to call: write {}{}/Selector",
            qtalk_cli::p2p::SCHEME,
            target.name
        ))
    })?;
    let args = call_args(&a.args, a.raw)?;
    let codec = peer::codec_by_name(&a.codec)
        .ok_or_else(|| Failure::Usage(format!("unknown codec {:?}", a.codec)))?;
    let started = tokio::time::Instant::now();
    let (node, session) =
        qtalk_cli::p2p::connect(&target.name, &via, &a.dial.settings(), a.timeout).await?;
    let call = Invocation {
        selector: &selector,
        args: &args,
        meta: &a.meta,
        started,
        timeout: a.timeout,
        target: &target.to_string(),
    };
    let result = call_on(session.into_session(), codec, call).await;
    node.close();
    result
}

/// One `qtalk call`: what to call, and by when.
struct Invocation<'a> {
    selector: &'a str,
    args: &'a Value,
    /// `--meta` entries.
    meta: &'a [(String, String)],
    started: tokio::time::Instant,
    timeout: Duration,
    target: &'a str,
}

/// Makes the call on `session`, prints the reply, and closes the session.
async fn call_on(
    session: qtalk_mux::Session,
    codec: Arc<dyn Codec>,
    call: Invocation<'_>,
) -> Result<(), Failure> {
    let Invocation {
        selector,
        args,
        meta,
        started,
        timeout,
        target,
    } = call;
    // A peer of our own so that calls back to us get `not found` rather than waiting.
    let me = Peer::new(session.clone(), codec);
    me.respond();
    // What is left of --timeout is the call's deadline, which the responder learns.
    let left = timeout.saturating_sub(started.elapsed());
    let mut ctx = CallContext::new().with_timeout(left);
    ctx.metadata_mut().extend(meta.iter().cloned());
    let result = me
        .caller()
        .call_with::<_, Value>(&ctx, selector, args)
        .await;
    session.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), session.wait()).await;
    match result {
        Ok(v) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
            Ok(())
        }
        Err(RpcError::Remote(m)) => Err(Failure::Remote(m)),
        Err(RpcError::Timeout) => Err(Failure::Transport(format!(
            "no reply from {} within {}",
            target,
            qtalk_cli::human_duration(timeout)
        ))),
        Err(e) => match Failure::from_rpc(&format!("calling {target}"), &e) {
            Failure::Transport(m) => {
                let hint = peer::certificate_hint(&m);
                Err(Failure::Transport(format!("{m}{hint}")))
            }
            other => Err(other),
        },
    }
}
