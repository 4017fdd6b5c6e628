//! Helpers shared by the fuzz targets: reading structured values off the fuzzer's bytes,
//! and the fixed configuration the stateful targets start from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tcpshake_proto::tcp;
use tcpshake_proto::wire::SeqNumber;

pub const CLIENT4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
pub const SERVER4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
pub const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
pub const SERVER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

/// The fuzzer's bytes as a stream of small values; zeros once exhausted.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// Our side of the connection, as tcpshake configures it (app.rs), with `isn`.
pub fn tcp_config(isn: u32, v6: bool) -> tcp::Config {
    let (c, s) = if v6 {
        (CLIENT6, SERVER6)
    } else {
        (CLIENT4, SERVER4)
    };
    tcp::Config {
        local: SocketAddr::new(c, 40000),
        remote: SocketAddr::new(s, 80),
        isn: SeqNumber(isn),
        mss: 1460,
        syn_window: 64240,
        rcv_buf: 128 * 1024,
        wscale: 7,
        sack_permitted: true,
        timestamps: true,
        ts_offset: 1,
        syn_retries: 2,
        data_retries: 4,
        rto_initial: Duration::from_secs(1),
        rto_min: Duration::from_millis(200),
        rto_max: Duration::from_secs(60),
        time_wait: Duration::from_millis(250),
        ack_with_data: false,
    }
}
