//! Just enough of NATS' text protocol for the worker demo, over a blocking `TcpStream`: connect,
//! subscribe to an inbox, publish a job with headers and a reply subject (`HPUB`), and read the
//! replies (`MSG`, `HMSG`), answering the server's `PING`s. xtask stays free of async-nats and
//! tokio.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One message the server delivered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) subject: String,
    /// The header block (`NATS/1.0 ...`), empty for a plain `MSG`.
    pub(crate) headers: String,
    pub(crate) payload: Vec<u8>,
}

pub(crate) struct NatsClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// A line cut short by a read timeout, completed by the next read.
    pending: String,
}

impl NatsClient {
    /// Connects, reads the server's `INFO` and waits for the `PONG` that proves `CONNECT` was
    /// taken.
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut client = NatsClient {
            reader: BufReader::new(stream),
            writer,
            pending: String::new(),
        };
        let info = client.line()?;
        if !info.starts_with("INFO ") {
            return Err(invalid(&format!("expected INFO, got {info:?}")));
        }
        client.writer.write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
              \"no_responders\":true,\"name\":\"xtask-demo\"}\r\nPING\r\n",
        )?;
        loop {
            match client.line()?.as_str() {
                "PONG" => return Ok(client),
                line if line.starts_with("-ERR") => return Err(invalid(line)),
                _ => {}
            }
        }
    }

    pub(crate) fn subscribe(&mut self, subject: &str, sid: u32) -> io::Result<()> {
        write!(self.writer, "SUB {subject} {sid}\r\n")
    }

    /// Publishes `payload` on `subject` with `headers`, asking for the answer on `reply_to`.
    pub(crate) fn request(
        &mut self,
        subject: &str,
        reply_to: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> io::Result<()> {
        let mut block = String::from("NATS/1.0\r\n");
        for (name, value) in headers {
            block.push_str(&format!("{name}: {value}\r\n"));
        }
        block.push_str("\r\n");
        let total = block.len() + payload.len();
        let mut frame =
            format!("HPUB {subject} {reply_to} {} {total}\r\n", block.len()).into_bytes();
        frame.extend_from_slice(block.as_bytes());
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.writer.write_all(&frame)
    }

    /// The next delivered message, waiting at most `timeout`; `None` when none came in time.
    pub(crate) fn next(&mut self, timeout: Duration) -> io::Result<Option<Delivered>> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        loop {
            let line = match self.line() {
                Ok(line) => line,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            match parse_control(&line)? {
                Control::Ping => self.writer.write_all(b"PONG\r\n")?,
                Control::Skip => {}
                Control::Message {
                    subject,
                    header_len,
                    total_len,
                } => {
                    // The body and its trailing CRLF, read whatever the timeout: it is already
                    // on its way.
                    self.reader
                        .get_ref()
                        .set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut body = vec![0; total_len + 2];
                    io::Read::read_exact(&mut self.reader, &mut body)?;
                    body.truncate(total_len);
                    let payload = body.split_off(header_len);
                    return Ok(Some(Delivered {
                        subject,
                        headers: String::from_utf8_lossy(&body).into_owned(),
                        payload,
                    }));
                }
            }
        }
    }

    fn line(&mut self) -> io::Result<String> {
        // On a timeout `read_line` keeps what it read in `pending`, for the next call.
        if self.reader.read_line(&mut self.pending)? == 0 || !self.pending.ends_with('\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "nats-server closed the connection",
            ));
        }
        let line = std::mem::take(&mut self.pending);
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// A protocol line from the server.
#[derive(Debug, PartialEq, Eq)]
enum Control {
    Ping,
    /// `+OK`, `PONG`, `INFO`: nothing to do.
    Skip,
    /// `MSG subject sid [reply] len` or `HMSG subject sid [reply] hdr_len total_len`; the body
    /// follows.
    Message {
        subject: String,
        header_len: usize,
        total_len: usize,
    },
}

fn parse_control(line: &str) -> io::Result<Control> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let number = |word: &str| {
        word.parse::<usize>()
            .map_err(|_| invalid(&format!("bad size in {line:?}")))
    };
    match words.as_slice() {
        ["PING"] => Ok(Control::Ping),
        ["PONG"] | ["+OK"] => Ok(Control::Skip),
        [info, ..] if *info == "INFO" => Ok(Control::Skip),
        ["MSG", subject, _sid, len] | ["MSG", subject, _sid, _, len] => Ok(Control::Message {
            subject: subject.to_string(),
            header_len: 0,
            total_len: number(len)?,
        }),
        ["HMSG", subject, _sid, headers, total] | ["HMSG", subject, _sid, _, headers, total] => {
            let (header_len, total_len) = (number(headers)?, number(total)?);
            if header_len > total_len {
                return Err(invalid(&format!(
                    "headers longer than the message: {line:?}"
                )));
            }
            Ok(Control::Message {
                subject: subject.to_string(),
                header_len,
                total_len,
            })
        }
        [err, ..] if *err == "-ERR" => Err(invalid(line)),
        _ => Err(invalid(&format!(
            "unexpected line from nats-server: {line:?}"
        ))),
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn control_lines_are_parsed_with_and_without_reply_subjects() {
        assert_eq!(parse_control("PING").unwrap(), Control::Ping);
        assert_eq!(parse_control("+OK").unwrap(), Control::Skip);
        assert_eq!(
            parse_control("MSG _INBOX.1 1 12").unwrap(),
            Control::Message {
                subject: "_INBOX.1".into(),
                header_len: 0,
                total_len: 12
            }
        );
        assert_eq!(
            parse_control("HMSG _INBOX.2 1 reply.x 16 20").unwrap(),
            Control::Message {
                subject: "_INBOX.2".into(),
                header_len: 16,
                total_len: 20
            }
        );
        assert!(
            parse_control("HMSG a 1 30 20").is_err(),
            "headers past the end"
        );
        assert!(parse_control("MSG a 1 many").is_err());
        assert!(parse_control("-ERR 'Authorization Violation'").is_err());
    }

    /// A scripted server on loopback: frames split across writes, a PING between messages.
    #[test]
    fn messages_split_across_reads_and_pings_between_them_are_handled() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"INFO {\"headers\":true}\r\n").unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while !line.starts_with("PING") {
                line.clear();
                reader.read_line(&mut line).unwrap();
            }
            stream.write_all(b"PONG\r\n").unwrap();
            // Nothing for a while: the client's short wait ends empty-handed.
            std::thread::sleep(Duration::from_millis(200));
            for piece in [
                &b"+OK\r\nMSG _INBOX.a 1 5\r\nhel"[..],
                b"lo\r\nPING\r\nHMSG _INBOX.b 1 ",
                b"16 18\r\nNATS/1.0 503\r\n\r\nok\r\n",
            ] {
                stream.write_all(piece).unwrap();
                stream.flush().unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            // The client answers the PING.
            line.clear();
            reader.read_line(&mut line).unwrap();
            line
        });
        let mut client = NatsClient::connect(addr).unwrap();
        assert!(client.next(Duration::from_millis(50)).unwrap().is_none());
        let first = client.next(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(first.subject, "_INBOX.a");
        assert_eq!(first.payload, b"hello");
        assert!(first.headers.is_empty());
        let second = client.next(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(second.subject, "_INBOX.b");
        assert_eq!(second.headers, "NATS/1.0 503\r\n\r\n");
        assert_eq!(second.payload, b"ok");
        assert_eq!(server.join().unwrap(), "PONG\r\n");
    }
}
