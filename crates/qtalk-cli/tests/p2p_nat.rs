//! `qtalk` between peers behind real NATs: Linux network namespaces, routers doing masquerade
//! with nftables, and the peers, the rendezvous (and an impostor) as `qtalk` processes inside
//! them.
//!
//! ```text
//!                    wan: bridge in <lab>-wan, 198.18.0.0/24
//!        ┌──────────────────────┼───────────────────────┐
//!   rdv 198.18.0.1       natA 198.18.0.2          natB 198.18.0.3
//!                             │ lan 198.19.1.0/24       │ lan 198.19.2.0/24
//!                        peerA 198.19.1.2         peerB 198.19.2.2
//!                       (peerB2 198.19.1.3: the same-NAT case)
//! ```
//!
//! 198.18.0.0/15 is set aside for benchmarking networks; nothing leaves the machine. The
//! routers drop new connections arriving on their wan side that are addressed to themselves,
//! as home routers do: otherwise the first punch packet from the other peer, arriving before
//! this side's own, is taken by the router and leaves a conntrack entry that makes the NAT
//! pick another port for this side's packets, and punching fails even between
//! endpoint-independent NATs.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Without them each test prints
//! `SKIPPED: <reason>` and passes, unless `QTALK_REQUIRE_NETNS=1`, when it fails. Each lab has
//! namespaces of its own (named after the process and a counter), removed when the test ends,
//! failed or not; the tests take turns, the machine being small.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const QTALK: &str = env!("CARGO_BIN_EXE_qtalk");
const RDV: &str = "quic://198.18.0.1:4433";
/// How long a process may take to say what the test waits for: a failure bound only.
const WAIT: Duration = Duration::from_secs(60);

static TURN: Mutex<()> = Mutex::new(());
static LABS: AtomicUsize = AtomicUsize::new(0);

/// Why the lab cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("network namespaces need root".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("`{tool}` is not installed (iproute2, nftables)"));
        }
    }
    None
}

/// Runs the scenario unless the machine cannot (see the module documentation).
fn scenario(name: &str, f: impl FnOnce()) {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let required = std::env::var("QTALK_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    let why = unavailable().or_else(|| {
        // Namespaces themselves may be refused (a container without the capability).
        let probe = format!("qtalk-probe-{}", std::process::id());
        let made = run("ip", &["netns", "add", &probe]).err();
        let _ = run("ip", &["netns", "del", &probe]);
        made.map(|e| format!("cannot make a network namespace: {e}"))
    });
    // `scripts/test.sh` counts what ran through QTALK_NETNS_TALLY.
    if let Ok(tally) = std::env::var("QTALK_NETNS_TALLY") {
        use std::io::Write;
        let verdict = if why.is_some() { "skipped" } else { "ran" };
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(tally)
        {
            let _ = file.write_all(format!("{verdict} {name}\n").as_bytes());
        }
    }
    if let Some(why) = why {
        assert!(!required, "{name}: QTALK_REQUIRE_NETNS=1 but {why}");
        println!("SKIPPED: {name}: {why}");
        return;
    }
    f();
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args) {
        panic!("{e}");
    }
}

/// Lines a process wrote on stderr, and a way to wait for one.
#[derive(Clone, Default)]
struct Lines(Arc<(Mutex<Seen>, Condvar)>);

/// The lines so far, and whether the stream ended.
type Seen = (Vec<String>, bool);

impl Lines {
    fn push(&self, line: Option<String>) {
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        match line {
            Some(l) => g.0.push(l),
            None => g.1 = true,
        }
        cv.notify_all();
    }

    /// The first line containing `needle`, waiting for it up to [`WAIT`].
    fn wait_for(&self, needle: &str) -> String {
        let (m, cv) = &*self.0;
        let deadline = Instant::now() + WAIT;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(l) = g.0.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let now = Instant::now();
            assert!(
                !g.1 && now < deadline,
                "no line with {needle:?} (ended: {}); got:\n{}",
                g.1,
                g.0.join("\n")
            );
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    fn all(&self) -> String {
        self.0
             .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .join("\n")
    }
}

struct Process {
    child: Child,
    stderr: Lines,
}

/// What `qtalk check` or `bench` printed, and how it ended.
struct Finished {
    ok: bool,
    stdout: String,
    stderr: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Nat {
    /// Plain masquerade: one public port per socket, whatever the destination.
    Cone,
    /// `masquerade random,fully-random`: a new public port per destination.
    Symmetric,
}

/// One topology, torn down on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    processes: Vec<Process>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

impl Lab {
    fn new(nat_b: Nat) -> Lab {
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let mut lab = Lab {
            prefix: format!("qtp2p-{}-{n}", std::process::id()),
            namespaces: Vec::new(),
            processes: Vec::new(),
        };
        for ns in ["wan", "rdv", "natA", "natB", "peerA", "peerB", "peerB2"] {
            let name = lab.ns(ns);
            must("ip", &["netns", "add", &name]);
            lab.namespaces.push(name.clone());
            must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        }
        lab.bridge("wan", "br0", None);
        lab.wire("wan", "rdv", "eth0", Some("198.18.0.1/24"), "br0");
        lab.wire("wan", "natA", "wan0", Some("198.18.0.2/24"), "br0");
        lab.wire("wan", "natB", "wan0", Some("198.18.0.3/24"), "br0");
        lab.bridge("natA", "lan0", Some("198.19.1.1/24"));
        lab.bridge("natB", "lan0", Some("198.19.2.1/24"));
        lab.wire("natA", "peerA", "eth0", Some("198.19.1.2/24"), "lan0");
        lab.wire("natB", "peerB", "eth0", Some("198.19.2.2/24"), "lan0");
        lab.wire("natA", "peerB2", "eth0", Some("198.19.1.3/24"), "lan0");
        for (peer, gw) in [
            ("peerA", "198.19.1.1"),
            ("peerB", "198.19.2.1"),
            ("peerB2", "198.19.1.1"),
        ] {
            must(
                "ip",
                &["-n", &lab.ns(peer), "route", "add", "default", "via", gw],
            );
        }
        lab.router("natA", Nat::Cone);
        lab.router("natB", nat_b);
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn bridge(&self, ns: &str, name: &str, addr: Option<&str>) {
        let ns = self.ns(ns);
        must("ip", &["-n", &ns, "link", "add", name, "type", "bridge"]);
        if let Some(addr) = addr {
            must("ip", &["-n", &ns, "addr", "add", addr, "dev", name]);
        }
        must("ip", &["-n", &ns, "link", "set", name, "up"]);
    }

    /// A veth pair from bridge `bridge` of `hub` to interface `ifname` of `ns`.
    fn wire(&self, hub: &str, ns: &str, ifname: &str, addr: Option<&str>, bridge: &str) {
        let (hub, ns) = (self.ns(hub), self.ns(ns));
        // Named after the far side, so each port of a bridge has its own name.
        let port = format!("to-{}", ns.rsplit('-').next().unwrap_or("x"));
        must(
            "ip",
            &[
                "link", "add", &port, "netns", &hub, "type", "veth", "peer", "name", ifname,
                "netns", &ns,
            ],
        );
        must("ip", &["-n", &hub, "link", "set", &port, "master", bridge]);
        must("ip", &["-n", &hub, "link", "set", &port, "up"]);
        if let Some(addr) = addr {
            must("ip", &["-n", &ns, "addr", "add", addr, "dev", ifname]);
        }
        must("ip", &["-n", &ns, "link", "set", ifname, "up"]);
    }

    fn router(&self, ns: &str, nat: Nat) {
        let ns = self.ns(ns);
        must(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ],
        );
        let masquerade = match nat {
            Nat::Cone => "masquerade",
            Nat::Symmetric => "masquerade random,fully-random",
        };
        let rules = format!(
            "table ip nat {{\n\
               chain postrouting {{ type nat hook postrouting priority 100; oifname \"wan0\" {masquerade}; }}\n\
             }}\n\
             table ip filter {{\n\
               chain forward {{ type filter hook forward priority 0; policy drop;\n\
                 ct state established,related accept; iifname \"lan0\" accept; }}\n\
               chain input {{ type filter hook input priority 0; policy accept;\n\
                 iifname \"wan0\" ct state new drop; }}\n\
             }}\n"
        );
        self.nft(&ns, &rules);
    }

    fn nft(&self, ns: &str, rules: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft in {ns}: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `qtalk ARGS` in namespace `ns`; it is killed when the lab goes.
    fn spawn(&mut self, ns: &str, args: &[&str], env: &[(&str, &str)]) -> usize {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(ns), QTALK])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting qtalk");
        let stderr = Lines::default();
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                match line {
                    Ok(l) => lines.push(Some(l)),
                    Err(_) => break,
                }
            }
            lines.push(None);
        });
        self.processes.push(Process { child, stderr });
        self.processes.len() - 1
    }

    fn stderr(&self, process: usize) -> &Lines {
        &self.processes[process].stderr
    }

    /// Waits (up to a generous bound) for a process to end.
    fn finish(&mut self, process: usize, limit: Duration) -> Finished {
        let p = &mut self.processes[process];
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = p.child.kill();
                panic!(
                    "qtalk did not end within {limit:?}; stderr:\n{}",
                    p.stderr.all()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut out) = p.child.stdout.take() {
            use std::io::Read;
            let _ = out.read_to_string(&mut stdout);
        }
        // The reader thread sees the end of the pipe once the process is gone.
        let _ = p.stderr.wait_for_end();
        Finished {
            ok: status.success(),
            stdout,
            stderr: p.stderr.all(),
        }
    }

    fn rendezvous(&mut self) -> usize {
        let rdv = self.spawn(
            "rdv",
            &["rendezvous", "--listen", "quic://198.18.0.1:4433"],
            &[],
        );
        self.stderr(rdv).wait_for("listening on");
        rdv
    }

    /// `qtalk interop --p2p NAME` in `ns`, once registered.
    fn serve(&mut self, ns: &str, name: &str, codec: &str) -> usize {
        let p = self.spawn(
            ns,
            &["interop", "--p2p", name, "--via", RDV, "--insecure"],
            &[("QTALK_CODEC", codec)],
        );
        self.stderr(p).wait_for("registered p2p://");
        p
    }

    /// `qtalk check` from `ns` against NAME, with a 64 MiB Bytes check.
    fn check(&mut self, ns: &str, name: &str, codec: &str) -> Finished {
        let p = self.start_check(ns, name, codec);
        self.finish(p, Duration::from_secs(300))
    }

    /// Starts [`Lab::check`]; returns the process.
    fn start_check(&mut self, ns: &str, name: &str, codec: &str) -> usize {
        let url = format!("p2p://{name}");
        self.spawn(
            ns,
            &[
                "check",
                "--insecure",
                "--via",
                RDV,
                "--timeout",
                "120s",
                "--bytes",
                "64MiB",
                &url,
            ],
            &[("QTALK_CODEC", codec)],
        )
    }

    /// The rendezvous's counters, asked from inside its namespace.
    fn stats(&mut self) -> serde_json::Value {
        let p = self.spawn(
            "rdv",
            &["call", "--insecure", "quic://198.18.0.1:4433/Stats"],
            &[],
        );
        let done = self.finish(p, WAIT);
        assert!(done.ok, "Stats failed: {}", done.stderr);
        serde_json::from_str(&done.stdout).expect("Stats answers JSON")
    }
}

impl Lines {
    fn wait_for_end(&self) -> bool {
        let (m, cv) = &*self.0;
        let deadline = Instant::now() + WAIT;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        while !g.1 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
        true
    }
}

/// The `path: ...` line of a finished `check` or `bench`.
fn path_line(done: &Finished) -> &str {
    done.stderr
        .lines()
        .find(|l| l.starts_with("path: "))
        .unwrap_or_else(|| panic!("no path line; stderr:\n{}", done.stderr))
}

fn assert_checked(done: &Finished, codec: &str) {
    assert!(
        done.ok,
        "check failed ({codec}); stdout:\n{}\nstderr:\n{}",
        done.stdout, done.stderr
    );
    assert!(done.stdout.contains("Bytes: 67108864"), "{}", done.stdout);
    assert!(
        done.stdout.contains("ok: 16 checks passed"),
        "{}",
        done.stdout
    );
}

fn count(stats: &serde_json::Value, key: &str) -> u64 {
    stats[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {stats}"))
}

#[test]
fn direct_through_two_cone_nats() {
    scenario("direct_through_two_cone_nats", || {
        let mut lab = Lab::new(Nat::Cone);
        lab.rendezvous();
        for codec in ["json", "cbor"] {
            let name = format!("b-{codec}");
            lab.serve("peerB", &name, codec);
            let done = lab.check("peerA", &name, codec);
            assert_checked(&done, codec);
            let path = path_line(&done);
            assert!(path.starts_with("path: direct"), "{path}");
            // B's public address: its NAT's.
            assert!(path.contains("at 198.18.0.3:"), "{path}");
            println!("{codec}: {path}");
        }
        // Nothing went through the relay, and the only calls were those of the setup: two
        // registrations, two introductions and the acceptors' relay joins, given up.
        let stats = lab.stats();
        assert_eq!(count(&stats, "relays"), 0, "{stats}");
        assert_eq!(count(&stats, "relayed_bytes"), 0, "{stats}");
        assert_eq!(count(&stats, "registers"), 2, "{stats}");
        assert_eq!(count(&stats, "connects"), 2, "{stats}");
        assert!(count(&stats, "relay_calls") <= 2, "{stats}");
    });
}

#[test]
fn relay_through_a_symmetric_nat() {
    scenario("relay_through_a_symmetric_nat", || {
        let mut lab = Lab::new(Nat::Symmetric);
        lab.rendezvous();
        for codec in ["json", "cbor"] {
            let name = format!("b-{codec}");
            lab.serve("peerB", &name, codec);
            let done = lab.check("peerA", &name, codec);
            assert_checked(&done, codec);
            let path = path_line(&done);
            assert!(path.starts_with("path: relayed"), "{path}");
            println!("{codec}: {path}");
        }
        // Each 64 MiB went there and back twice (the interop service echoes through a
        // callback), inside TLS, through the relay.
        let stats = lab.stats();
        assert_eq!(count(&stats, "relays"), 2, "{stats}");
        assert!(
            count(&stats, "relayed_bytes") > 2 * 4 * (64 << 20),
            "{stats}"
        );
    });
}

#[test]
fn same_nat_uses_the_local_address() {
    scenario("same_nat_uses_the_local_address", || {
        let mut lab = Lab::new(Nat::Cone);
        lab.rendezvous();
        for codec in ["json", "cbor"] {
            let name = format!("b-{codec}");
            lab.serve("peerB2", &name, codec);
            let done = lab.check("peerA", &name, codec);
            assert_checked(&done, codec);
            let path = path_line(&done);
            // Straight across the LAN: the NAT does not loop packets for its own public
            // address back inside.
            assert!(path.starts_with("path: direct"), "{path}");
            assert!(path.contains("at 198.19.1.3:"), "{path}");
            println!("{codec}: {path}");
        }
    });
}

#[test]
fn direct_session_outlives_the_rendezvous() {
    scenario("direct_session_outlives_the_rendezvous", || {
        let mut lab = Lab::new(Nat::Cone);
        for codec in ["json", "cbor"] {
            let rdv = lab.rendezvous();
            let name = format!("b-{codec}");
            lab.serve("peerB", &name, codec);
            // The check (its 64 MiB transfer included) runs on the session; the rendezvous is
            // killed as soon as the session is up.
            let check = lab.start_check("peerA", &name, codec);
            let path = lab.stderr(check).wait_for("path: ");
            assert!(path.starts_with("path: direct"), "{path}");
            let p = &mut lab.processes[rdv];
            p.child.kill().unwrap();
            p.child.wait().unwrap();
            let done = lab.finish(check, Duration::from_secs(300));
            assert_checked(&done, codec);
            println!("{codec}: {path}; checked with the rendezvous gone");
        }
    });
}

#[test]
fn impostors_are_refused() {
    scenario("impostors_are_refused", || {
        let mut lab = Lab::new(Nat::Cone);
        lab.rendezvous();
        lab.serve("peerB", "b", "cbor");
        // A third peer claiming B's name.
        let thief = lab.spawn(
            "peerA",
            &["interop", "--p2p", "b", "--via", RDV, "--insecure"],
            &[],
        );
        let done = lab.finish(thief, WAIT);
        assert!(
            !done.ok && done.stderr.contains("name taken"),
            "{}",
            done.stderr
        );

        // A box on B's path: B's router hands every new packet from A's NAT to a QUIC server
        // of its own (another certificate), and keeps B's own packets from reaching A.
        let impostor = lab.spawn(
            "natB",
            &["interop", "--listen", "quic://0.0.0.0:4500"],
            &[("RUST_LOG", "qtalk_mux=debug")],
        );
        lab.stderr(impostor).wait_for("listening on");
        let nat_b = lab.ns("natB");
        lab.nft(
            &nat_b,
            "table ip onpath {\n\
               chain to_impostor { type nat hook prerouting priority -110;\n\
                 iifname \"wan0\" ip saddr 198.18.0.2 udp dport != 4500 redirect to :4500; }\n\
               chain keep_b_in { type filter hook forward priority -10;\n\
                 iifname \"lan0\" ip daddr 198.18.0.2 drop; }\n\
             }\n\
             insert rule ip filter input udp dport 4500 accept\n",
        );
        lab.serve("peerB", "b-json", "json");
        for (name, codec) in [("b", "cbor"), ("b-json", "json")] {
            let done = lab.check("peerA", name, codec);
            assert_checked(&done, codec);
            let path = path_line(&done);
            // The impostor's certificate was refused; the relay, checked end to end, reached B.
            assert!(path.starts_with("path: relayed"), "{path}");
            let seen = lab.stderr(impostor).wait_for("handshake failed");
            println!("{codec}: {path}; the impostor: {seen}");
        }
    });
}
