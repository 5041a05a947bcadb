//! The surface fuzz bodies (fuzz/src/surfaces.rs) on stable: each over its checked-in seeds
//! (fuzz/seeds/TARGET/, regression inputs included) and deterministic mutants of them.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)] // the packet bodies run in tests/robustness.rs
mod targets;

#[path = "support/corpus.rs"]
mod corpus;

use corpus::run_corpus;
use targets::surfaces;

#[test]
fn topology_loader_keeps_its_promises() {
    run_corpus("topology", surfaces::topology, 0x5eed_0101, 300);
}

#[test]
fn replay_pcap_input_keeps_its_promises() {
    run_corpus("pcap", surfaces::pcap, 0x5eed_0102, 40);
    surfaces::remove_scratch();
}

#[test]
fn cluster_frames_keep_their_promises() {
    run_corpus("cluster_frame", surfaces::cluster_frame, 0x5eed_0103, 100);
}

#[test]
fn join_tokens_keep_their_promises() {
    run_corpus("join_token", surfaces::join_token, 0x5eed_0104, 500);
}

#[test]
fn csrs_keep_their_promises() {
    run_corpus("csr", surfaces::csr, 0x5eed_0105, 40);
}

#[test]
fn certificates_keep_their_promises() {
    run_corpus("certificate", surfaces::certificate, 0x5eed_0106, 300);
}

#[test]
fn command_lines_keep_their_promises() {
    run_corpus("cli", surfaces::cli, 0x5eed_0107, 300);
}

/// The seeds reach the interesting paths, so the corpus tests are not vacuous: the topology
/// seeds load, a CSR seed gets signed, a token seed parses, a frame seed decodes.
#[test]
fn seeds_reach_past_the_first_check() {
    use swarmnet::control::token::JoinToken;
    use swarmnet::topology::Topology;
    for (name, t) in corpus::seeds("topology") {
        let text = String::from_utf8(t).expect("UTF-8 seed");
        Topology::parse(&text, &name).unwrap_or_else(|e| panic!("{name}: {e}"));
        // And the round trip of the body holds for it.
        let topo = Topology::parse(&text, &name).unwrap();
        let again = surfaces::to_toml(&topo);
        assert_eq!(Topology::parse(&again, "again").unwrap(), topo);
    }
    assert!(corpus::seeds("join_token")
        .iter()
        .all(|(_, t)| JoinToken::parse(std::str::from_utf8(t).unwrap()).is_ok()));
    let ca = swarmnet::control::ca::RootCa::generate().unwrap();
    let (_, csr) = corpus::seeds("csr")
        .into_iter()
        .find(|(n, _)| n == "csr-pem-worker")
        .expect("PEM CSR seed");
    let pem = String::from_utf8(csr[1..].to_vec()).unwrap();
    ca.sign_csr(&pem, "n1", swarmnet::api::Role::Worker, "s1")
        .expect("the CSR seed is signed");
}
