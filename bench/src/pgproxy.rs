//! A loopback TCP proxy between a benchmark server and Postgres that counts round trips and
//! reads what each one sent, so the report can say how many round trips a database check
//! pays and which statements they carry — measured on the wire, independently of the code
//! that sends them.
//!
//! A round trip is a turn: the client sends (one or several messages, in one write or
//! several) and then waits for the server's answer. It is counted when the client speaks
//! for the first time after the server last answered — the definition the Postgres
//! round-trip test uses (`tests/db_postgres.rs`). Each turn's frontend messages are parsed
//! (the protocol is plain text once the startup is over: connect with `sslmode=disable`):
//! a simple `Query` carries its SQL, an extended-protocol `Bind` the SQL its statement was
//! prepared with, and a turn of a `Sync` (after nothing but queued `ROLLBACK`s) is sqlx's
//! ping.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What one turn carried, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turn {
    /// One entry per statement sent (`Query`, or `Bind` of a prepared statement), its SQL.
    pub statements: Vec<String>,
    /// `Sync` messages and simple queries: protocol exchanges (several in one turn means
    /// the client pipelined).
    pub exchanges: usize,
}

impl Turn {
    /// sqlx's ping (`Connection::ping`): a `Sync` alone, or after the `ROLLBACK`s sqlx queued
    /// for it to flush (`TransactionManager::start_rollback`: the runner leaves it the
    /// `ROLLBACK` of an empty transaction), all in the same write.
    pub fn is_ping(&self) -> bool {
        self.statements.iter().all(|s| s == "ROLLBACK")
            && self.exchanges == self.statements.len() + 1
    }
}

/// The proxy. Dropping it stops it.
pub struct Proxy {
    /// Where to connect instead of Postgres.
    pub addr: SocketAddr,
    turns: Arc<Mutex<Vec<Turn>>>,
    _tasks: JoinSet<()>,
}

impl Proxy {
    /// Listen on loopback and forward every connection to `target`.
    pub async fn start(target: SocketAddr) -> Result<Proxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("proxy: cannot listen on loopback: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let turns = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        let log = turns.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let log = log.clone();
                connections.spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        forward(inbound, outbound, log).await;
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            turns,
            _tasks: tasks,
        })
    }

    /// Turns completed so far (answered by the server), on all connections.
    pub fn turns(&self) -> Vec<Turn> {
        self.turns.lock().expect("not poisoned").clone()
    }

    /// How many turns have completed so far.
    pub fn count(&self) -> usize {
        self.turns.lock().expect("not poisoned").len()
    }
}

/// The state of one connection's client side, shared with its server side.
#[derive(Default)]
struct Connection {
    /// The turn being sent (the client has spoken since the server last answered).
    open: Option<Turn>,
    /// Statement name → SQL, from `Parse` messages.
    prepared: HashMap<String, String>,
}

async fn forward(inbound: TcpStream, outbound: TcpStream, log: Arc<Mutex<Vec<Turn>>>) {
    let (mut from_client, mut to_client) = inbound.into_split();
    let (mut from_server, mut to_server) = outbound.into_split();
    let state = Arc::new(Mutex::new(Connection::default()));
    let client_state = state.clone();
    let client = async move {
        let mut parser = Parser::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut state = client_state.lock().expect("not poisoned");
                let state = &mut *state;
                let turn = state.open.get_or_insert_with(Turn::default);
                parser.feed(&buf[..n], turn, &mut state.prepared);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_server.shutdown().await;
    };
    let server = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // The server answers: the client's turn is over.
            if let Some(turn) = state.lock().expect("not poisoned").open.take() {
                log.lock().expect("not poisoned").push(turn);
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown().await;
    };
    tokio::join!(client, server);
}

/// Splits the client's byte stream into frontend messages.
#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
    /// Past the untyped startup messages (`SSLRequest`, `StartupMessage`).
    started: bool,
}

/// `SSLRequest` and `GSSENCRequest` codes: another untyped message follows.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

impl Parser {
    fn feed(&mut self, bytes: &[u8], turn: &mut Turn, prepared: &mut HashMap<String, String>) {
        self.buf.extend_from_slice(bytes);
        loop {
            if !self.started {
                let Some(len) = read_u32(&self.buf, 0) else {
                    return;
                };
                let len = len as usize;
                if self.buf.len() < len {
                    return;
                }
                let code = read_u32(&self.buf, 4).unwrap_or(0);
                self.buf.drain(..len.max(4));
                if code != SSL_REQUEST && code != GSSENC_REQUEST {
                    self.started = true;
                }
                continue;
            }
            let Some(len) = read_u32(&self.buf, 1) else {
                return;
            };
            let end = 1 + len as usize;
            if self.buf.len() < end {
                return;
            }
            let body = &self.buf[5..end];
            match self.buf[0] {
                b'Q' => {
                    turn.statements.push(cstr(body).0.to_string());
                    turn.exchanges += 1;
                }
                b'P' => {
                    let (name, rest) = cstr(body);
                    let (sql, _) = cstr(rest);
                    prepared.insert(name.to_string(), sql.to_string());
                }
                b'B' => {
                    let (_portal, rest) = cstr(body);
                    let (statement, _) = cstr(rest);
                    turn.statements.push(
                        prepared
                            .get(statement)
                            .cloned()
                            .unwrap_or_else(|| format!("(prepared statement {statement})")),
                    );
                }
                b'S' => turn.exchanges += 1,
                _ => {}
            }
            self.buf.drain(..end);
        }
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A NUL-terminated string at the start of `bytes`, and what follows it.
fn cstr(bytes: &[u8]) -> (&str, &[u8]) {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let s = std::str::from_utf8(&bytes[..end]).unwrap_or("(not UTF-8)");
    (s, bytes.get(end + 1..).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn reads_statements_and_exchanges_from_the_frontend_stream() {
        let mut stream = Vec::new();
        // SSLRequest, then StartupMessage (protocol 3.0, user=postgres).
        stream.extend_from_slice(&8u32.to_be_bytes());
        stream.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        let params = b"user\0postgres\0\0";
        stream.extend_from_slice(&(8 + params.len() as u32).to_be_bytes());
        stream.extend_from_slice(&196_608u32.to_be_bytes());
        stream.extend_from_slice(params);
        stream.extend(message(b'Q', b"BEGIN\0"));
        stream.extend(message(b'P', b"s1\0SELECT $1\0\0\0"));
        stream.extend(message(b'B', b"\0s1\0\0\0\0\0\0\0"));
        stream.extend(message(b'E', b"\0\0\0\0\0"));
        stream.extend(message(b'S', b""));

        let mut parser = Parser::default();
        let mut turn = Turn::default();
        let mut prepared = HashMap::new();
        // In pieces, as TCP may deliver it.
        for chunk in stream.chunks(7) {
            parser.feed(chunk, &mut turn, &mut prepared);
        }
        assert_eq!(turn.statements, vec!["BEGIN", "SELECT $1"]);
        assert_eq!(turn.exchanges, 2);
        assert!(!turn.is_ping());

        let mut ping = Turn::default();
        parser.feed(&message(b'S', b""), &mut ping, &mut prepared);
        assert!(ping.is_ping());
        let mut flushing = Turn::default();
        parser.feed(&message(b'Q', b"ROLLBACK\0"), &mut flushing, &mut prepared);
        parser.feed(&message(b'S', b""), &mut flushing, &mut prepared);
        assert!(flushing.is_ping(), "{flushing:?}");
    }
}
