//! Query in, answer out: parsing, the decision (answer, forward, drop) and the encoding,
//! including truncation to the UDP size the client accepts.

use std::net::Ipv4Addr;

use hickory_proto::op::message::EmitAndCount;
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_proto::{ProtoError, ProtoErrorKind};

use super::table::{key_of, ptr_ipv4, DnsTable, Lookup, MAX_KEY};
use super::{EDNS_UDP_MAX, TTL, UDP_MIN};

/// How the query came, which bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A UDP datagram. `max` is the largest payload the caller can carry back (e.g. the
    /// path MTU less the IPv4 and UDP headers); the answer is also kept within 512 bytes or
    /// the client's EDNS size (capped at `EDNS_UDP_MAX`), with TC set when records were left out.
    Udp { max: usize },
    /// A TCP stream (the two-byte length framing is the caller's): up to 65535 bytes.
    Tcp,
}

/// What `respond` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds the answer to send back.
    Answered,
    /// Not a name of the swarm: send the query bytes, unchanged, to the host's resolvers.
    Forward,
    /// Nothing can be answered, not even FORMERR; `out` is empty.
    Drop(DnsDrop),
}

/// Why a message got no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsDrop {
    /// Shorter than a DNS header: there is no id to answer to.
    Short,
    /// A response (QR set), not a query: answering it could loop between two resolvers.
    NotQuery,
    /// The answer could not be encoded (or not even its header fit the client's size).
    Encode,
}

impl DnsTable {
    /// Answers `query` for a task on `nets` (its own network first; indices as in
    /// `ServiceView::networks`), writing the answer into `out` (cleared first). `entropy`
    /// orders multi-address answers.
    pub fn respond(
        &self,
        nets: &[usize],
        query: &[u8],
        transport: Transport,
        entropy: u64,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        let header = match Header::read(&mut BinDecoder::new(query)) {
            Ok(h) => h,
            Err(_) => return Outcome::Drop(DnsDrop::Short),
        };
        if header.message_type() != MessageType::Query {
            return Outcome::Drop(DnsDrop::NotQuery);
        }
        let msg = match Message::from_vec(query) {
            Ok(m) => m,
            // RFC 1035 4.1.1: "Format error - The name server was unable to interpret the query."
            Err(_) => return error(&header, None, ResponseCode::FormErr, None, out),
        };
        let edns = reply_edns(&msg, transport);
        if header.op_code() != OpCode::Query {
            return error(
                &header,
                msg.query(),
                ResponseCode::NotImp,
                edns.as_ref(),
                out,
            );
        }
        if msg.queries().len() != 1 {
            return error(&header, None, ResponseCode::FormErr, edns.as_ref(), out);
        }
        if msg.extensions().as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 6.1.3: "If a responder does not implement the VERSION level of the
            // request, then it MUST respond with RCODE=BADVERS."
            let edns = edns.unwrap_or_default();
            return error(
                &header,
                msg.query(),
                ResponseCode::BADVERS,
                Some(&edns),
                out,
            );
        }
        let Some(q) = msg.query() else {
            return error(&header, None, ResponseCode::FormErr, edns.as_ref(), out);
        };
        if q.query_class() != DNSClass::IN {
            return Outcome::Forward;
        }
        let mut buf = [0u8; MAX_KEY];
        let Some(len) = key_of(q.name(), &mut buf) else {
            return Outcome::Forward;
        };
        let key = &buf[..len];

        let shuffled: Vec<Ipv4Addr>;
        let answers = match q.query_type() {
            RecordType::A | RecordType::ANY => match self.lookup(nets, key) {
                Lookup::Addrs(addrs) if addrs.len() > 1 => {
                    let mut v = addrs.to_vec();
                    Shuffle::new(entropy).shuffle(&mut v);
                    shuffled = v;
                    Answers::A(q.name(), &shuffled)
                }
                Lookup::Addrs(addrs) => Answers::A(q.name(), addrs),
                Lookup::Empty => Answers::None,
                Lookup::Unknown => return Outcome::Forward,
            },
            RecordType::PTR => match ptr_ipv4(key).and_then(|ip| self.lookup_ptr(nets, ip)) {
                Some(record) => Answers::Ptr(q.name(), record),
                None if self.lookup(nets, key) != Lookup::Unknown => Answers::None,
                None => return Outcome::Forward,
            },
            _ => {
                if self.lookup(nets, key) == Lookup::Unknown {
                    return Outcome::Forward;
                }
                Answers::None
            }
        };
        let mut reply = Header::response_from_request(&header);
        reply.set_recursion_available(true);
        match encode(
            &reply,
            Some(q),
            answers,
            edns.as_ref(),
            limit(&msg, transport),
            out,
        ) {
            Ok(()) => Outcome::Answered,
            Err(()) => {
                out.clear();
                Outcome::Drop(DnsDrop::Encode)
            }
        }
    }
}

/// The SERVFAIL the io layer sends back when no upstream resolver answered `query`: the id,
/// question, RD and CD echoed, RA set. False (and `out` empty) when `query` is no query.
pub fn servfail(query: &[u8], out: &mut Vec<u8>) -> bool {
    error_for(query, ResponseCode::ServFail, out)
}

/// The REFUSED a forwarder sends when it has too many queries in flight to take `query`
/// (as current Docker does). False (and `out` empty) when `query` is no query.
pub fn refused(query: &[u8], out: &mut Vec<u8>) -> bool {
    error_for(query, ResponseCode::Refused, out)
}

fn error_for(query: &[u8], code: ResponseCode, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
        return false;
    };
    if header.message_type() != MessageType::Query {
        return false;
    }
    let msg = Message::from_vec(query).ok();
    let q = msg.as_ref().and_then(Message::query);
    let edns = msg.as_ref().and_then(|m| reply_edns(m, Transport::Tcp));
    matches!(
        error(&header, q, code, edns.as_ref(), out),
        Outcome::Answered
    )
}

/// Fits an upstream `answer` into `max` bytes for a UDP client: copied as it is when it fits,
/// otherwise its header (rcode and flags kept) and question with TC set and no records, so the
/// client asks again over TCP. False (and `out` empty) when `answer` is no DNS response.
pub fn fit(answer: &[u8], max: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Ok(header) = Header::read(&mut BinDecoder::new(answer)) else {
        return false;
    };
    if header.message_type() != MessageType::Response {
        return false;
    }
    if answer.len() <= max {
        out.extend_from_slice(answer);
        return true;
    }
    let msg = Message::from_vec(answer).ok();
    let q = msg.as_ref().and_then(Message::query);
    let edns = msg.as_ref().and_then(|m| m.extensions().clone());
    let mut header = header;
    header.set_truncated(true);
    let limit = u16::try_from(max).unwrap_or(u16::MAX);
    if emit(&header, q, &Answers::None, 0, edns.as_ref(), limit, out).is_ok() {
        return true;
    }
    emit(&header, q, &Answers::None, 0, None, limit, out).is_ok()
}

/// The answer section. A records are made one at a time while they are encoded (one
/// `Record` reused, its address changed), not collected first: most of an answer's cost was
/// moving whole `Record`s around.
enum Answers<'a> {
    None,
    /// One A record per address, owned by the question's name (its case kept).
    A(&'a Name, &'a [Ipv4Addr]),
    /// One PTR record, prebuilt with a lower-case owner; re-made with the question's name when
    /// that differs in case.
    Ptr(&'a Name, &'a Record),
}

impl Answers<'_> {
    fn len(&self) -> usize {
        match self {
            Answers::None => 0,
            Answers::A(_, addrs) => addrs.len(),
            Answers::Ptr(..) => 1,
        }
    }
}

/// The same labels byte for byte (case included): DNS compares names without regard to case,
/// but the answer's owner keeps the question's spelling.
fn same_bytes(a: &Name, b: &Name) -> bool {
    a.num_labels() == b.num_labels() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
}

/// Encodes at most `max` of `answers`, stopping (as hickory's own section encoding does)
/// at the first record that does not fit: it is rolled back and the count reported.
struct Section<'a, 'b> {
    answers: &'b Answers<'a>,
    max: usize,
}

impl EmitAndCount for Section<'_, '_> {
    fn emit(&mut self, encoder: &mut BinEncoder<'_>) -> Result<usize, ProtoError> {
        let mut count = 0;
        let mut put = |record: &Record, encoder: &mut BinEncoder<'_>| {
            let start = encoder.offset();
            match record.emit(encoder) {
                Ok(()) => {
                    count += 1;
                    Ok(())
                }
                Err(e) => Err(match e.kind() {
                    ProtoErrorKind::MaxBufferSizeExceeded(_) => {
                        encoder.set_offset(start);
                        encoder.trim();
                        ProtoError::from(ProtoErrorKind::NotAllRecordsWritten { count })
                    }
                    _ => e,
                }),
            }
        };
        match self.answers {
            Answers::None => {}
            Answers::Ptr(owner, record) => {
                if self.max > 0 {
                    if same_bytes(owner, record.name()) {
                        put(record, encoder)?;
                    } else {
                        let mut own = (*record).clone();
                        own.set_name((*owner).clone());
                        put(&own, encoder)?;
                    }
                }
            }
            Answers::A(owner, addrs) => {
                let Some(first) = addrs.first() else {
                    return Ok(0);
                };
                let mut record = Record::from_rdata((*owner).clone(), TTL, RData::A(A(*first)));
                for ip in addrs.iter().take(self.max) {
                    record.set_data(RData::A(A(*ip)));
                    put(&record, encoder)?;
                }
            }
        }
        Ok(count)
    }
}

/// The largest answer the client takes over `transport`.
fn limit(msg: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp { max } => {
            // Message::max_payload is the client's EDNS size, never below 512.
            let client = msg.max_payload().min(EDNS_UDP_MAX);
            usize::from(client).min(max)
        }
    }
}

/// RFC 6891 7: "If an OPT record is present in a received request, compliant responders MUST
/// include an OPT record in their respective responses."
fn reply_edns(msg: &Message, transport: Transport) -> Option<Edns> {
    msg.extensions().as_ref()?;
    let mut edns = Edns::new();
    let size = match transport {
        Transport::Udp { max } => u16::try_from(max).unwrap_or(u16::MAX).min(EDNS_UDP_MAX),
        Transport::Tcp => EDNS_UDP_MAX,
    };
    edns.set_max_payload(size.max(UDP_MIN));
    Some(edns)
}

/// An answer with `code` and no records.
fn error(
    request: &Header,
    q: Option<&Query>,
    code: ResponseCode,
    edns: Option<&Edns>,
    out: &mut Vec<u8>,
) -> Outcome {
    let mut reply = Header::response_from_request(request);
    reply.set_recursion_available(true).set_response_code(code);
    if request.op_code() != OpCode::Query {
        // RFC 1035 leaves RD/CD of other opcodes undefined: answer them plainly.
        reply
            .set_recursion_desired(false)
            .set_checking_disabled(false);
    }
    match encode(&reply, q, Answers::None, edns, usize::from(UDP_MIN), out) {
        Ok(()) => Outcome::Answered,
        Err(()) => {
            out.clear();
            Outcome::Drop(DnsDrop::Encode)
        }
    }
}

/// Encodes the answer within `limit` bytes. Answers that do not fit are left out and TC is set;
/// the OPT record is kept (it is what tells the client our size).
fn encode(
    header: &Header,
    q: Option<&Query>,
    answers: Answers<'_>,
    edns: Option<&Edns>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), ()> {
    let limit = u16::try_from(limit).unwrap_or(u16::MAX);
    let all = answers.len();
    let emitted = emit(header, q, &answers, all, edns, limit, out)?;
    if !emitted.truncated() || edns.is_none() {
        return Ok(());
    }
    // The OPT record came last and may have been the one left out: count the answers that
    // fit with room kept for it, then encode those with it.
    let opt_len = 11;
    let fit = emit(
        header,
        q,
        &answers,
        all,
        None,
        limit.saturating_sub(opt_len),
        out,
    )?;
    let mut header = *header;
    header.set_truncated(true);
    let kept = usize::from(fit.answer_count());
    emit(&header, q, &answers, kept, edns, limit, out).map(|_| ())
}

#[allow(clippy::too_many_arguments)]
fn emit(
    header: &Header,
    q: Option<&Query>,
    answers: &Answers<'_>,
    max: usize,
    edns: Option<&Edns>,
    limit: u16,
    out: &mut Vec<u8>,
) -> Result<Header, ()> {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(limit);
    let none: [Record; 0] = [];
    hickory_proto::op::message::emit_message_parts(
        header,
        &mut q.into_iter(),
        &mut Section { answers, max },
        &mut none.iter(),
        &mut none.iter(),
        edns,
        &[],
        &mut encoder,
    )
    .map_err(|_| ())
}

/// Fisher-Yates over a splitmix64 stream seeded by the caller's entropy.
struct Shuffle(u64);

impl Shuffle {
    fn new(seed: u64) -> Shuffle {
        Shuffle(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // i + 1 <= 65535 answers: the modulo bias is below 2^-48.
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
