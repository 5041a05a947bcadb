//! Deterministic replay: pcap in, dataplane core, pcap out.
