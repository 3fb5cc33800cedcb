/*
 * openloop.c - short connections at a fixed offered rate (open loop), for bench/short-ab.sh.
 *
 *   openloop ADDR:PORT HELLO_FILE RATE SECONDS [SEED]
 *   openloop ADDR:PORT HELLO_FILE cN SECONDS
 *
 * Starts connections at RATE per second, Poisson arrivals (exponential gaps from a fixed
 * seed, so every target gets the same schedule), whether or not earlier ones have finished.
 * Each connection does what the harness's `tcpbench rate` does: connect, send the
 * ClientHello, read the answer, read to EOF, close. Latency is timed from the connection's
 * scheduled start, not from when the loop got round to it, so a generator that falls behind
 * counts its lateness instead of hiding it (no coordinated omission).
 *
 * tcpbench rate is a closed loop: a fixed number in flight, the next one opened as one ends.
 * There a proxy that ends connections sooner gets more of them in flight in the timed part
 * (connect to first byte), and its latency is its rate's queueing. Here every target gets
 * the same load, so latency compares what each adds at that load.
 *
 * With cN instead of a rate it is that closed loop, N in flight (c32 is `tcpbench rate ... 32`),
 * each connection timed from its connect(2); the mean and after_us show what the percentiles
 * hide there: the mean is in flight / rate less the time connections are held after their
 * answer, untimed, waiting for the FIN.
 *
 * Prints one line of key=value: offered (RATE or cN), conns, errors, late (starts more than
 * 1 ms behind schedule), secs, cps, p50_us, p90_us, p99_us, max_us, mean_us (start to the
 * answer's first byte), eof_p50_us, eof_p99_us (to EOF), after_us (mean, first byte to EOF).
 * Loopback (127/8) only.
 * Build: gcc -O2 -Wall -o openloop openloop.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXFD 65536

enum { C_CONNECTING, C_WAIT_RESP, C_WAIT_EOF };
struct conn {
    int state;
    uint64_t due;   /* scheduled start, ns */
    uint64_t first; /* the answer's first byte, ns */
};
static struct conn cs[MAXFD];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *m) {
    perror(m);
    exit(2);
}

static void parse_addr(const char *s, struct sockaddr_in *sa) {
    char host[64];
    const char *c = strrchr(s, ':');
    if (!c || (size_t)(c - s) >= sizeof host) {
        fprintf(stderr, "openloop: bad address %s\n", s);
        exit(2);
    }
    memcpy(host, s, (size_t)(c - s));
    host[c - s] = 0;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(c + 1));
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        fprintf(stderr, "openloop: bad host %s\n", host);
        exit(2);
    }
    if ((ntohl(sa->sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "openloop: refusing non-loopback %s\n", host);
        exit(2);
    }
}

/* xorshift64*: the same gaps for every target from the same seed. */
static uint64_t rng;
static double uniform(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t us_between(uint64_t t0, uint64_t t1) {
    uint64_t us = (t1 - t0) / 1000;
    return us > 0xffffffffu ? 0xffffffffu : (uint32_t)us;
}

/* Latencies in µs, every one kept (a closed loop's count is not known in advance). */
struct samples {
    uint32_t *v;
    size_t n, cap;
};

static void push(struct samples *s, uint32_t us) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 65536;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) die("realloc");
    }
    s->v[s->n++] = us;
}

/* The q quantile of sorted samples (q = 1: the largest), 0 if there are none. */
static uint32_t pct(const struct samples *s, double q) {
    return s->n ? s->v[(size_t)((double)(s->n - 1) * q)] : 0;
}

/* Opens a connection due at `due`: 0, or -1 if no socket could be opened or dialled. */
static int start(int ep, const struct sockaddr_in *sa, uint64_t due) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || fd >= MAXFD) {
        if (fd >= 0) close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cs[fd].due = due;
    cs[fd].state = C_CONNECTING;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: openloop ADDR:PORT HELLO_FILE RATE|cN SECONDS [SEED]\n");
        return 2;
    }
    struct sockaddr_in sa;
    parse_addr(argv[1], &sa);
    FILE *f = fopen(argv[2], "rb");
    if (!f) die(argv[2]);
    static unsigned char hello[65536];
    size_t hello_len = fread(hello, 1, sizeof hello, f);
    fclose(f);
    /* Closed loop: `closed` in flight, rate 0. */
    int closed = argv[3][0] == 'c' ? atoi(argv[3] + 1) : 0;
    double rate = closed ? 0 : atof(argv[3]), secs = atof(argv[4]);
    rng = argc > 5 ? strtoull(argv[5], NULL, 10) : 0x9E3779B97F4A7C15ull;
    if (!rng) rng = 1;
    if (hello_len < 5 || (rate <= 0 && closed <= 0) || closed > 10000 || secs <= 0) {
        fprintf(stderr, "openloop: need a hello file, RATE > 0 or c1 to c10000, and SECONDS > 0\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct samples first = {0}, eof = {0};
    double first_sum = 0, after_sum = 0;
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    uint64_t errors = 0, done = 0, late = 0, started = 0;
    int inflight = 0;
    uint64_t t_start = now_ns(), t_end = t_start + (uint64_t)(secs * 1e9);
    /* The next scheduled start; a closed loop has none after its first N. */
    uint64_t next = closed ? t_end : t_start;
    for (int i = 0; i < closed; i++) {
        if (start(ep, &sa, t_start) < 0) {
            errors++;
        } else {
            inflight++;
            started++;
        }
    }
    unsigned char buf[8192];
    struct epoll_event evs[512];
    for (;;) {
        uint64_t t = now_ns();
        /* Start every connection that is due. */
        while (next <= t && next < t_end) {
            if (t - next > 1000000) late++;
            if (start(ep, &sa, next) < 0) {
                errors++;
            } else {
                inflight++;
                started++;
            }
            next += (uint64_t)(-log(1.0 - uniform()) / rate * 1e9);
        }
        if (next >= t_end && inflight == 0) break;
        if (t > t_end + 5000000000ull) break; /* stuck connections: counted below */
        /* Sleep until the next start or an event, with a nanosecond timeout. */
        struct timespec to = {0, 0};
        uint64_t wake = next < t_end ? next : t + 100000000ull;
        if (wake > t) {
            to.tv_sec = (time_t)((wake - t) / 1000000000ull);
            to.tv_nsec = (long)((wake - t) % 1000000000ull);
        }
        int n = epoll_pwait2(ep, evs, 512, &to, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_pwait2");
        }
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            struct conn *c = &cs[fd];
            int finished = 0, failed = 0;
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || send(fd, hello, hello_len, MSG_NOSIGNAL) != (ssize_t)hello_len) {
                    failed = 1;
                } else {
                    c->state = C_WAIT_RESP;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                }
            } else {
                for (;;) {
                    ssize_t r = recv(fd, buf, sizeof buf, 0);
                    if (r > 0) {
                        if (c->state == C_WAIT_RESP) {
                            c->first = now_ns();
                            push(&first, us_between(c->due, c->first));
                            first_sum += (double)(c->first - c->due) / 1000;
                            c->state = C_WAIT_EOF;
                        }
                        continue;
                    }
                    if (r == 0) {
                        if (c->state == C_WAIT_EOF) finished = 1;
                        else failed = 1;
                    } else if (errno != EAGAIN) {
                        failed = 1;
                    }
                    break;
                }
            }
            if (finished || failed) {
                if (finished) {
                    uint64_t end = now_ns();
                    push(&eof, us_between(c->due, end));
                    after_sum += (double)(end - c->first) / 1000;
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                inflight--;
                if (finished) done++;
                else errors++;
                /* A closed loop dials the next one as one ends, as tcpbench rate does. */
                uint64_t now = now_ns();
                if (closed && now < t_end) {
                    if (start(ep, &sa, now) < 0) {
                        errors++;
                    } else {
                        inflight++;
                        started++;
                    }
                }
            }
        }
    }
    double el = (double)(now_ns() - t_start) / 1e9;
    qsort(first.v, first.n, sizeof *first.v, cmp_u32);
    qsort(eof.v, eof.n, sizeof *eof.v, cmp_u32);
    printf("offered=%s started=%llu conns=%llu errors=%llu stuck=%d late=%llu secs=%.3f cps=%.1f "
           "p50_us=%u p90_us=%u p99_us=%u max_us=%u mean_us=%.0f eof_p50_us=%u eof_p99_us=%u "
           "after_us=%.0f\n",
           argv[3], (unsigned long long)started, (unsigned long long)done,
           (unsigned long long)errors, inflight, (unsigned long long)late, el, (double)done / el,
           pct(&first, 0.50), pct(&first, 0.90), pct(&first, 0.99), pct(&first, 1),
           first.n ? first_sum / (double)first.n : 0, pct(&eof, 0.50), pct(&eof, 0.99),
           done ? after_sum / (double)done : 0);
    return 0;
}
