// What the software NIC's framing costs a ping-pong over loopback, without
// the engine: a C mimic of ways to move one message of SIZE bytes each way,
// all busy-polling with non-blocking calls, interleaved round by round.
//   raw           send(SIZE); the peer recv()s SIZE bytes
//   +32 bytes     send(SIZE + 32) from one buffer; one stream read
//   sendmsg       sendmsg(32-byte header, payload); one stream read
//   header first  sendmsg(header, payload); recv(header), then recv(payload)
//                 (the engine's way for a frame whose header it has not seen)
//   one recvmsg   sendmsg(header, payload); recvmsg(header, payload)
//                 (the engine's way for a SEND read ahead into its receive)
//   two buffers   raw, but each side sends from one buffer and receives
//                 into another (as fabric-perf's lat-send does: its send
//                 and receive regions), where raw echoes from the buffer
//                 it received into
//   engine calls  two buffers, sendmsg(header, payload) and readv(header,
//                 payload, 32 bytes of room behind): the system calls and
//                 buffers of a SEND read ahead, without the engine
//   + state       engine calls, and between a message's arrival and the
//                 answer's send, a walk through STATE_LINES cache lines
//                 (each read names the next) spread over 256 KiB: what the
//                 engine's own state costs once a 64 KiB copy has pushed it
//                 out of the L1 cache (the engine reads about that many
//                 lines per message: callgrind's cache simulation)
// Prints each way's median one-way latency over ROUNDS rounds and the median
// of its per-round ratios to raw (the machine's speed drifts between rounds;
// ratios taken within a round do not).
// Build and run: cc -O2 -o /tmp/framing-mimic scripts/framing-mimic.c &&
//   /tmp/framing-mimic [SIZE=65536] [ROUNDS=20] [ITERATIONS=400]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { RAW, LONGER, SENDMSG, HEADER_FIRST, ONE_RECVMSG, TWO_BUFFERS, ENGINE_CALLS, WITH_STATE, WAYS };
static const char *names[WAYS] = {"raw", "+32 bytes", "sendmsg", "header first", "one recvmsg", "two buffers", "engine calls", "+ state"};

// The stand-in for the engine's state: STATE_LINES lines of a 256 KiB
// area chained in a random order, each holding the offset of the next.
enum { STATE_BYTES = 256 * 1024, STATE_LINES = 100 };
static char *state;
static volatile size_t state_sink;

static void make_state(void) {
    state = aligned_alloc(64, STATE_BYTES);
    size_t slots = STATE_BYTES / 64, order[STATE_LINES];
    srand(7);
    for (int i = 0; i < STATE_LINES; i++) {
        size_t pick;
        int taken;
        do {
            pick = (size_t)rand() % slots;
            taken = 0;
            for (int j = 0; j < i; j++) taken |= order[j] == pick;
        } while (taken);
        order[i] = pick;
    }
    for (int i = 0; i < STATE_LINES; i++) *(size_t *)(state + order[i] * 64) = order[(i + 1) % STATE_LINES] * 64;
}

static void walk_state(void) {
    size_t at = 0;
    for (int i = 0; i < STATE_LINES; i++) at = *(size_t *)(state + at);
    state_sink = at;
}

static char header[32];
static char tail[32];
static char *payload;
// What the two-buffer ways send from.
static char *outgoing;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void fail(const char *what) {
    perror(what);
    exit(1);
}

// Steps the vectors past `moved` bytes a call moved: drops the vectors
// filled (or sent) whole, trims the one partly done.
static void advance(struct iovec **vectors, int *count_vectors, size_t moved) {
    while (moved > 0 && moved >= (*vectors)->iov_len) { moved -= (*vectors)->iov_len; (*vectors)++; (*count_vectors)--; }
    if (moved > 0) { (*vectors)->iov_base = (char *)(*vectors)->iov_base + moved; (*vectors)->iov_len -= moved; }
}

// Reads exactly `count` bytes into the vectors, busy-polling.
static void receive_vectors(int fd, struct iovec *vectors, int count_vectors, size_t count) {
    size_t done = 0;
    while (done < count) {
        struct msghdr message = {0};
        message.msg_iov = vectors;
        message.msg_iovlen = count_vectors;
        ssize_t n = recvmsg(fd, &message, MSG_DONTWAIT);
        if (n == 0) exit(1);
        if (n < 0) continue;
        done += n;
        advance(&vectors, &count_vectors, n);
    }
}

// Reads exactly `count` bytes into the vectors with readv, busy-polling
// (the socket is non-blocking for the ways that use it).
static void readv_vectors(int fd, struct iovec *vectors, int count_vectors, size_t count) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = readv(fd, vectors, count_vectors);
        if (n == 0) exit(1);
        if (n < 0) continue;
        done += n;
        advance(&vectors, &count_vectors, n);
    }
}

static void receive_into(int fd, char *buffer, size_t count) {
    struct iovec vector = {buffer, count};
    receive_vectors(fd, &vector, 1, count);
}

static void send_all(int fd, struct iovec *vectors, int count_vectors, size_t count) {
    size_t done = 0;
    while (done < count) {
        struct msghdr message = {0};
        message.msg_iov = vectors;
        message.msg_iovlen = count_vectors;
        ssize_t n = sendmsg(fd, &message, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) continue;  // a non-blocking socket, full
        if (n < 0) fail("sendmsg");
        done += n;
        advance(&vectors, &count_vectors, n);
    }
}

static void send_message(int fd, int way, size_t size) {
    struct iovec vectors[2] = {{header, 32}, {payload, size}};
    switch (way) {
    case RAW: send_all(fd, &vectors[1], 1, size); break;
    case TWO_BUFFERS: vectors[1].iov_base = outgoing; send_all(fd, &vectors[1], 1, size); break;
    case WITH_STATE: walk_state();  // fall through: the post before the send
    case ENGINE_CALLS: vectors[1].iov_base = outgoing; send_all(fd, vectors, 2, size + 32); break;
    case LONGER: vectors[1].iov_len = size + 32; send_all(fd, &vectors[1], 1, size + 32); break;
    default: send_all(fd, vectors, 2, size + 32); break;
    }
}

static void receive_message(int fd, int way, size_t size) {
    struct iovec vectors[2] = {{header, 32}, {payload, size}};
    switch (way) {
    case RAW: case TWO_BUFFERS: receive_into(fd, payload, size); break;
    case ENGINE_CALLS: case WITH_STATE: {
        // The room behind is never filled: a ping-pong has no next frame.
        struct iovec three[3] = {{header, 32}, {payload, size}, {tail, 32}};
        readv_vectors(fd, three, 3, size + 32);
        break;
    }
    case LONGER: case SENDMSG: receive_into(fd, payload, size + 32); break;
    case HEADER_FIRST: receive_into(fd, header, 32); receive_into(fd, payload, size); break;
    case ONE_RECVMSG: receive_vectors(fd, vectors, 2, size + 32); break;
    }
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *values, int count) {
    qsort(values, count, sizeof(double), compare);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

// One way's ping-pong over a fresh connection: median one-way latency (us).
static double measure(int way, size_t size, int iterations) {
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1)) fail("listen");
    getsockname(listener, (struct sockaddr *)&address, &length);
    int warmup = 50;
    pid_t echo = fork();
    if (echo == 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&address, sizeof address)) fail("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (way == ENGINE_CALLS || way == WITH_STATE) fcntl(fd, F_SETFL, O_NONBLOCK);
        for (int i = 0; i < warmup + iterations; i++) {
            receive_message(fd, way, size);
            send_message(fd, way, size);
        }
        _exit(0);
    }
    int fd = accept(listener, NULL, NULL);
    close(listener);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (way == ENGINE_CALLS || way == WITH_STATE) fcntl(fd, F_SETFL, O_NONBLOCK);
    double *samples = malloc(sizeof(double) * iterations);
    for (int i = 0; i < warmup + iterations; i++) {
        double start = now_us();
        send_message(fd, way, size);
        receive_message(fd, way, size);
        if (i >= warmup) samples[i - warmup] = (now_us() - start) / 2;
    }
    close(fd);
    waitpid(echo, NULL, 0);
    double result = median(samples, iterations);
    free(samples);
    return result;
}

int main(int argc, char **argv) {
    size_t size = argc > 1 ? strtoul(argv[1], NULL, 10) : 65536;
    int rounds = argc > 2 ? atoi(argv[2]) : 20;
    int iterations = argc > 3 ? atoi(argv[3]) : 400;
    if (size == 0 || rounds < 1 || iterations < 1) {
        fprintf(stderr, "usage: framing-mimic [SIZE > 0] [ROUNDS >= 1] [ITERATIONS >= 1]\n");
        return 2;
    }
    payload = calloc(1, size + 32);
    outgoing = calloc(1, size + 32);
    make_state();
    double latency[WAYS][rounds], ratio[WAYS][rounds];
    for (int round = 0; round < rounds; round++) {
        for (int way = 0; way < WAYS; way++) latency[way][round] = measure(way, size, iterations);
        for (int way = 0; way < WAYS; way++) ratio[way][round] = latency[way][round] / latency[RAW][round];
    }
    printf("%zu B ping-pong over loopback, %d rounds of %d iterations, busy-polling\n", size, rounds, iterations);
    printf("%-14s %12s %14s\n", "way", "one-way (us)", "ratio to raw");
    for (int way = 0; way < WAYS; way++) {
        printf("%-14s %12.2f %14.3f\n", names[way], median(latency[way], rounds), median(ratio[way], rounds));
    }
    return 0;
}
