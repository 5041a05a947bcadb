//! The DNS fuzz body (`fuzz/src/dns.rs`) on stable: over its checked-in seeds (queries a stub
//! resolver sends, with and without EDNS, and regression inputs) and deterministic mutants.

#[path = "../fuzz/src/dns.rs"]
mod dns;

#[path = "support/corpus.rs"]
mod corpus;

#[test]
fn dns_queries_keep_their_promises() {
    corpus::run_corpus("dns", dns::query, 0x5eed_0201, 2_000);
}
