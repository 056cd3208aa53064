//! Metadata servers that are not hyper (issue 10 §6): one that writes an answer's head and body
//! in two segments with Nagle's algorithm on, as Python's `http.server` does, makes every request
//! on a reused connection wait for the client's delayed ACK (~40 ms). kiln must not reuse
//! connections for its metadata requests. Checked by what the emulator saw, not by a clock
//! (`bench/metadata.sh` measures the time).

use kiln::config::Config;
use kiln::metadata::fetch;
use testkit::emulator::metadata::{CLOUDS, Cloud, MetadataEmulator, Options};

#[tokio::test]
async fn every_metadata_request_has_a_connection_of_its_own() {
    for cloud in CLOUDS {
        let options = Options {
            split_segments: true,
            ..Options::new(cloud).user_data("APP_SECRET=s3cr3t\n")
        };
        let emulator = MetadataEmulator::start(options);
        let config = Config::parse(&emulator.config_section("deadline = \"20s\""))
            .expect("config")
            .metadata;
        let metadata = fetch(&config)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", cloud.name()));
        assert_eq!(
            metadata.user_data.as_deref(),
            Some(&b"APP_SECRET=s3cr3t\n"[..]),
            "{}",
            cloud.name()
        );
        if cloud == Cloud::Ec2 {
            // A token, then the document, the hostname, user-data and the tags: several requests.
            assert!(emulator.log().len() > 3, "{:?}", emulator.log());
        }
        assert_eq!(
            emulator.max_requests_per_connection(),
            1,
            "{}: a connection carried more than one request: {:?}",
            cloud.name(),
            emulator.log()
        );
    }
}
