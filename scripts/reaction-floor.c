// The floor of a user-space reaction (issue 15): the least time from a SYN-ACK's arrival
// on an AF_PACKET tap to our ACK leaving through that tap, for a program that does nothing
// but read the tap and send a prebuilt ACK through a raw socket — no parsing beyond the
// ports, no state machine, no allocation, no records. tcpshake can only be slower.
//
// For each of N probes: a SYN (raw socket, IP_HDRINCL) to DST_BASE.x:80 from a port of
// 61000-61999; the tap is read until that port's SYN-ACK comes (kernel timestamp,
// SO_TIMESTAMPNS), the ACK is sent at once, and the tap read until its outgoing copy comes
// (its timestamp); then a RST ends the server's connection. Prints the reaction (ACK out −
// SYN-ACK in, both tap stamps, as tcpshake's legs and tcpdump see them) per probe, and
// its parts: tap stamp → recvmsg returned, building the ACK, sendto called → tap stamp
// (CLOCK_REALTIME, the stamps' clock); last, the SYN's sendto returning − the SYN-ACK's
// stamp: positive when the SYN-ACK came inside our own sendto (over veth the server's
// kernel answers in the sender's softirq), time no user-space program can react in.
//
// mode `spin`: recv(MSG_DONTWAIT) in a loop; `sleep`: poll(2) until the tap is readable
// (the scheduler's wake-up is then part of the reaction).
//
// The caller keeps the kernel's TCP off ports 61000-61999 (an nftables drop of its RSTs)
// and runs this in a lab namespace. Built and run by scripts/bench-reaction-floor.
//
// usage: reaction-floor IFNAME SRC_IP DST_PREFIX(e.g. 198.19.0.) N spin|sleep
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint16_t csum(const void *data, size_t len, uint32_t sum) {
    const uint8_t *p = data;
    for (; len > 1; len -= 2, p += 2) sum += (p[0] << 8) | p[1];
    if (len) sum += p[0] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

// A 40-byte IPv4+TCP segment, no options.
static void segment(uint8_t *b, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                    uint32_t seq, uint32_t ack, uint8_t flags) {
    memset(b, 0, 40);
    b[0] = 0x45; b[3] = 40; b[6] = 0x40; b[8] = 64; b[9] = 6;
    memcpy(b + 12, &src, 4); memcpy(b + 16, &dst, 4);
    uint8_t *t = b + 20;
    t[0] = sport >> 8; t[1] = sport; t[2] = dport >> 8; t[3] = dport;
    uint32_t s = htonl(seq), a = htonl(ack);
    memcpy(t + 4, &s, 4); memcpy(t + 8, &a, 4);
    t[12] = 5 << 4; t[13] = flags; t[14] = 0xff; t[15] = 0xff;
    uint8_t ph[12];
    memcpy(ph, &src, 4); memcpy(ph + 4, &dst, 4); ph[8] = 0; ph[9] = 6; ph[10] = 0; ph[11] = 20;
    uint32_t sum = 0;
    for (int i = 0; i < 12; i += 2) sum += (ph[i] << 8) | ph[i + 1];
    uint16_t c = csum(t, 20, sum);
    t[16] = c >> 8; t[17] = c;
}

struct pkt { int64_t at; int outgoing; uint8_t flags; uint16_t sport, dport; uint32_t seq, ack; };

// One packet off the tap, or 0 when none (MSG_DONTWAIT).
static int tap_read(int fd, struct pkt *p) {
    uint8_t buf[256], ctl[128];
    struct sockaddr_ll sll;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr m = {&sll, sizeof sll, &iov, 1, ctl, sizeof ctl, 0};
    ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT);
    if (n < 40) return 0;
    p->at = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            p->at = ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    if (sll.sll_protocol != htons(ETH_P_IP) || (buf[0] >> 4) != 4 || buf[9] != 6) return 0;
    const uint8_t *t = buf + (buf[0] & 15) * 4;
    p->outgoing = sll.sll_pkttype == PACKET_OUTGOING;
    p->sport = (t[0] << 8) | t[1]; p->dport = (t[2] << 8) | t[3];
    p->seq = ntohl(*(uint32_t *)(t + 4)); p->ack = ntohl(*(uint32_t *)(t + 8));
    p->flags = t[13];
    return 1;
}

static void wait_tap(int fd, int sleep_mode) {
    if (!sleep_mode) return;
    struct pollfd pf = {fd, POLLIN, 0};
    poll(&pf, 1, 100);
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: %s IF SRC DST_PREFIX N spin|sleep\n", argv[0]); return 2; }
    int sleep_mode = strcmp(argv[5], "sleep") == 0;
    int n = atoi(argv[4]);
    uint32_t src;
    inet_pton(AF_INET, argv[2], &src);
    // ETH_P_ALL: a socket bound to one protocol does not see outgoing packets.
    int tap = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL));
    int on = 1;
    setsockopt(tap, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                             .sll_ifindex = (int)if_nametoindex(argv[1])};
    if (tap < 0 || bind(tap, (struct sockaddr *)&ll, sizeof ll) < 0) { perror("tap"); return 1; }
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (raw < 0) { perror("raw"); return 1; }
    struct pkt p;
    while (tap_read(tap, &p)) {}
    srand(getpid());
    for (int i = 0; i < n; i++) {
        char dsts[64];
        snprintf(dsts, sizeof dsts, "%s%d", argv[3], i % 250 + 1);
        uint32_t dst;
        inet_pton(AF_INET, dsts, &dst);
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = dst};
        uint16_t sport = 61000 + (uint16_t)((i + rand()) % 1000);
        uint32_t isn = (uint32_t)rand();
        uint8_t syn[40], ack[40];
        segment(syn, src, dst, sport, 80, isn, 0, 0x02);
        sendto(raw, syn, 40, 0, (struct sockaddr *)&to, sizeof to);
        struct timespec sr;
        clock_gettime(CLOCK_REALTIME, &sr);
        int64_t syn_returned = sr.tv_sec * 1000000000LL + sr.tv_nsec;
        int64_t synack_at = 0, ack_at = 0, read_at = 0, send_at = 0;
        uint32_t peer = 0;
        // Bounded by the deadline: 200 ms per probe.
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if ((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec) > 200000000) break;
            if (!tap_read(tap, &p)) { wait_tap(tap, sleep_mode && !synack_at); continue; }
            if (!synack_at && !p.outgoing && p.sport == 80 && p.dport == sport && (p.flags & 0x12) == 0x12) {
                // The reaction: the ACK was prepared but for the peer's sequence number.
                struct timespec r;
                clock_gettime(CLOCK_REALTIME, &r);
                read_at = r.tv_sec * 1000000000LL + r.tv_nsec;
                peer = p.seq;
                segment(ack, src, dst, sport, 80, isn + 1, peer + 1, 0x10);
                clock_gettime(CLOCK_REALTIME, &r);
                send_at = r.tv_sec * 1000000000LL + r.tv_nsec;
                sendto(raw, ack, 40, 0, (struct sockaddr *)&to, sizeof to);
                synack_at = p.at;
            } else if (synack_at && p.outgoing && p.sport == sport && p.flags == 0x10) {
                ack_at = p.at;
                break;
            }
        }
        uint8_t rst[40];
        segment(rst, src, dst, sport, 80, isn + 1, 0, 0x04);
        sendto(raw, rst, 40, 0, (struct sockaddr *)&to, sizeof to);
        // reaction, tap stamp → read returned, building the ACK, sendto → tap stamp (ns)
        if (synack_at && ack_at)
            printf("%lld %lld %lld %lld %lld\n", (long long)(ack_at - synack_at),
                   (long long)(read_at - synack_at), (long long)(send_at - read_at),
                   (long long)(ack_at - send_at), (long long)(syn_returned - synack_at));
        usleep(2000);
        while (tap_read(tap, &p)) {}
    }
    return 0;
}
