/*
 * An OSU-style MPI benchmark in C, the same loops as mpibench's (OSU's
 * latency, bw, bibw and mbw_mr, plus a ring and an all-pairs exchange for
 * more ranks than cores, and the collectives barrier, allreduce, bcast and
 * alltoall), so that any MPI's mpicc can build it and scripts/bench-mpi.sh
 * and scripts/bench-collectives.sh can run the peers beside this project's
 * MPI.
 *
 *   mpicc -O2 -o osu-style scripts/osu-style.c
 *   mpirun -n 2 ./osu-style TEST SIZE [SCALE]
 *
 * TEST: latency, bw, bibw, mbw_mr, ring, allpairs. Rank 0 prints one line:
 *   osu-style TEST SIZE VALUE UNIT [p99 STEP_US]
 * with the units mpibench uses (us one-way, MB/s, msg/s).
 *
 * TEST: barrier, allreduce (SIZE bytes of MPI_FLOAT, SIZE/4 elements but at
 * least one, MPI_SUM), bcast (SIZE bytes from rank 0), alltoall (SIZE bytes
 * to and from every rank). Every rank times each operation on its own;
 * rank 0 prints the slowest rank's mean and 99th percentile per operation:
 *   osu-style TEST SIZE AVG_US us p99 P99_US
 * (barrier ignores SIZE and prints it as given).
 *
 * TEST: put_lat, get_lat (SIZE bytes then MPI_Win_flush, per operation),
 * put_bw, get_bw (64 operations then a flush), acc_lat, acc_bw (SIZE bytes
 * of MPI_DOUBLE with MPI_SUM), fop_lat (MPI_Fetch_and_op, MPI_INT64_T,
 * MPI_SUM) and cas_lat (MPI_Compare_and_swap, MPI_INT64_T): rank 0 on
 * rank 1's window (MPI_Win_allocate) under MPI_Win_lock(SHARED), rank 1
 * waiting in MPI_Barrier, as mpibench's one-sided tests with a polling
 * target. Rank 0 prints one line as above (us per op, or MB/s).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MPICH defines MPI_STATUSES_IGNORE as (MPI_Status *)1, which GCC 11 and
 * later read as an empty array that MPI_Waitall would write past. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

#define WINDOW 64

static int iterations(const char *test, long size, double scale, int *warmup) {
    int base;
    if (!strcmp(test, "bw") || !strcmp(test, "bibw") || !strcmp(test, "mbw_mr") || !strcmp(test, "put_bw") || !strcmp(test, "get_bw")
        || !strcmp(test, "acc_bw"))
        base = size <= 8192 ? 100 : 20;
    else
        base = size <= 8192 ? 10000 : size <= (256 << 10) ? 1000 : 100;
    int n = (int)(base * scale);
    if (n < 1) n = 1;
    *warmup = n / 10 > 0 ? n / 10 : 1;
    return n;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum collective { NOT_COLLECTIVE = -1, BARRIER, ALLREDUCE, BCAST, ALLTOALL };

static enum collective collective_of(const char *test) {
    if (!strcmp(test, "barrier")) return BARRIER;
    if (!strcmp(test, "allreduce")) return ALLREDUCE;
    if (!strcmp(test, "bcast")) return BCAST;
    if (!strcmp(test, "alltoall")) return ALLTOALL;
    return NOT_COLLECTIVE;
}

/*
 * One collective, the same loop as mpibench's: warm-up, a barrier, then
 * every operation timed on its own, since a mean alone hides the stalls a
 * collective's slowest round adds. Each rank keeps its own times (a
 * collective ends at different moments on different ranks); rank 0 prints
 * the slowest rank's mean and 99th percentile.
 */
static void collective(enum collective op, const char *test, long bytes, int iters, int warmup, int rank, int size) {
    /* OSU's allreduce counts SIZE bytes as floats; a size below one float
     * still sends one, so that 1..3 bytes are not an empty operation. */
    int count = op == ALLREDUCE ? (int)(bytes / 4) : (int)bytes;
    if (op == ALLREDUCE && bytes > 0 && count == 0) count = 1;
    size_t span = op == ALLTOALL ? (size_t)bytes * size : op == ALLREDUCE ? (size_t)count * sizeof(float) : (size_t)bytes;
    if (span == 0) span = 1;
    char *send = malloc(span), *receive = malloc(span);
    double *times = malloc(sizeof(double) * iters);
    if (op == ALLREDUCE)
        /* Ones: ordinary floats with exact sums, where memset's 0x01 bytes
         * would be floats near 1e-38, at the edge of the denormals some
         * reductions handle slowly. */
        for (int i = 0; i < count; i++) ((float *)send)[i] = 1.0f;
    else
        memset(send, 1, span);
    memset(receive, 0, span);

    for (int i = 0; i < warmup + iters; i++) {
        if (i == warmup) MPI_Barrier(MPI_COMM_WORLD);
        double before = MPI_Wtime();
        switch (op) {
        case BARRIER: MPI_Barrier(MPI_COMM_WORLD); break;
        case ALLREDUCE: MPI_Allreduce(send, receive, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
        case BCAST: MPI_Bcast(send, count, MPI_BYTE, 0, MPI_COMM_WORLD); break;
        case ALLTOALL: MPI_Alltoall(send, count, MPI_BYTE, receive, count, MPI_BYTE, MPI_COMM_WORLD); break;
        case NOT_COLLECTIVE: break;
        }
        double after = MPI_Wtime();
        if (i >= warmup) times[i - warmup] = after - before;
    }

    /* The 99th percentile is the sorted time at ceil(0.99 n) - 1, taken in
     * integers: (99 n + 99) / 100 is ceil(99 n / 100) exactly (the same as
     * ceil(0.99 n) in doubles for every count up to 200000), and needs no
     * libm, which bench scripts do not link. */
    double mine[2] = {0, 0}, slowest[2] = {0, 0};
    for (int i = 0; i < iters; i++) mine[0] += times[i];
    mine[0] /= iters;
    qsort(times, iters, sizeof(double), compare);
    mine[1] = times[(int)((99L * iters + 99) / 100) - 1];
    MPI_Reduce(mine, slowest, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("osu-style %s %ld %.2f us p99 %.2f\n", test, bytes, slowest[0] * 1e6, slowest[1] * 1e6);
    free(times);
    free(receive);
    free(send);
}

/* The one-sided tests (see the top of this file). */
static int one_sided(const char *test, long size, int iters, int warmup, int rank) {
    int put = !strncmp(test, "put_", 4), get = !strncmp(test, "get_", 4), acc = !strncmp(test, "acc_", 4);
    int fop = !strcmp(test, "fop_lat"), cas = !strcmp(test, "cas_lat");
    if (!put && !get && !acc && !fop && !cas) return 0;
    int bandwidth = strstr(test, "_bw") != NULL;
    int per = bandwidth ? WINDOW : 1;
    long bytes = size > 8 ? size : 8;
    char *base;
    MPI_Win window;
    MPI_Win_allocate(bytes, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &window);
    memset(base, 0, bytes);
    char *origin = malloc(bytes), *result = malloc(bytes + 16);
    memset(origin, 1, bytes);
    memset(result, 0, bytes + 16);
    MPI_Barrier(MPI_COMM_WORLD);
    double seconds = 0;
    if (rank == 0) {
        MPI_Win_lock(MPI_LOCK_SHARED, 1, 0, window);
        double start = 0;
        for (int i = 0; i < iters + warmup; i++) {
            if (i == warmup) start = MPI_Wtime();
            for (int j = 0; j < per; j++) {
                if (put) MPI_Put(origin, size, MPI_CHAR, 1, 0, size, MPI_CHAR, window);
                else if (get) MPI_Get(result, size, MPI_CHAR, 1, 0, size, MPI_CHAR, window);
                else if (acc) MPI_Accumulate(origin, bytes / 8, MPI_DOUBLE, 1, 0, bytes / 8, MPI_DOUBLE, MPI_SUM, window);
                else if (fop) MPI_Fetch_and_op(origin, result, MPI_INT64_T, 1, 0, MPI_SUM, window);
                else MPI_Compare_and_swap(origin, result, result + 8, MPI_INT64_T, 1, 0, window);
            }
            MPI_Win_flush(1, window);
        }
        seconds = MPI_Wtime() - start;
        MPI_Win_unlock(1, window);
        double value = bandwidth ? (double)iters * per * size / seconds / 1e6 : seconds / iters * 1e6;
        printf("osu-style %s %ld %.3f %s\n", test, size, value, bandwidth ? "MB/s" : "us per op");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Win_free(&window);
    free(origin);
    free(result);
    return 1;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 3) {
        if (rank == 0) fprintf(stderr, "usage: osu-style TEST SIZE [SCALE]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *test = argv[1];
    long bytes = atol(argv[2]);
    double scale = argc > 3 ? atof(argv[3]) : 1.0;
    int warmup;
    int iters = iterations(test, bytes, scale, &warmup);
    enum collective op = collective_of(test);
    if (one_sided(test, bytes, iters, warmup, rank)) {
        MPI_Finalize();
        return 0;
    }
    if (op != NOT_COLLECTIVE) {
        collective(op, test, bytes, iters, warmup, rank, size);
        MPI_Finalize();
        return 0;
    }
    int slots = size > WINDOW ? size : WINDOW;
    char *send = malloc(bytes > 4 ? bytes : 4);
    char *receive = malloc(bytes > 4 ? bytes : 4);
    char *windowed = malloc((size_t)(bytes > 0 ? bytes : 1) * slots);
    MPI_Request *requests = malloc(sizeof(MPI_Request) * 2 * slots);
    double *steps = malloc(sizeof(double) * iters);
    memset(send, 1, bytes > 4 ? bytes : 4);
    double seconds = 0, messages = 0;

    MPI_Barrier(MPI_COMM_WORLD);
    if (!strcmp(test, "latency")) {
        if (rank < 2) {
            double start = 0;
            for (int i = 0; i < iters + warmup; i++) {
                if (i == warmup) start = MPI_Wtime();
                if (rank == 0) {
                    MPI_Send(send, bytes, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
                    MPI_Recv(receive, bytes, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else {
                    MPI_Recv(receive, bytes, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    MPI_Send(send, bytes, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
                }
            }
            seconds = MPI_Wtime() - start;
            messages = 2.0 * iters;
        }
    } else if (!strcmp(test, "bw") || !strcmp(test, "mbw_mr")) {
        int pairs = size / 2;
        if (rank < 2 * pairs) {
            int sender = rank < pairs;
            int partner = sender ? rank + pairs : rank - pairs;
            double start = 0;
            for (int i = 0; i < iters + warmup; i++) {
                if (i == warmup) start = MPI_Wtime();
                if (sender) {
                    for (int j = 0; j < WINDOW; j++) MPI_Isend(send, bytes, MPI_CHAR, partner, 2, MPI_COMM_WORLD, &requests[j]);
                    MPI_Waitall(WINDOW, requests, MPI_STATUSES_IGNORE);
                    MPI_Recv(receive, 4, MPI_CHAR, partner, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else {
                    for (int j = 0; j < WINDOW; j++) MPI_Irecv(windowed + (size_t)j * bytes, bytes, MPI_CHAR, partner, 2, MPI_COMM_WORLD, &requests[j]);
                    MPI_Waitall(WINDOW, requests, MPI_STATUSES_IGNORE);
                    MPI_Send(send, 4, MPI_CHAR, partner, 3, MPI_COMM_WORLD);
                }
            }
            seconds = MPI_Wtime() - start;
            messages = (double)iters * WINDOW;
        }
    } else if (!strcmp(test, "bibw")) {
        if (rank < 2) {
            int partner = 1 - rank;
            double start = 0;
            for (int i = 0; i < iters + warmup; i++) {
                if (i == warmup) start = MPI_Wtime();
                for (int j = 0; j < WINDOW; j++) MPI_Irecv(windowed + (size_t)j * bytes, bytes, MPI_CHAR, partner, 4, MPI_COMM_WORLD, &requests[j]);
                for (int j = 0; j < WINDOW; j++) MPI_Isend(send, bytes, MPI_CHAR, partner, 4, MPI_COMM_WORLD, &requests[WINDOW + j]);
                MPI_Waitall(2 * WINDOW, requests, MPI_STATUSES_IGNORE);
            }
            seconds = MPI_Wtime() - start;
            messages = 2.0 * iters * WINDOW;
        }
    } else if (!strcmp(test, "ring") || !strcmp(test, "allpairs")) {
        int ring = !strcmp(test, "ring");
        int next = (rank + 1) % size, previous = (rank + size - 1) % size;
        double start = 0;
        for (int i = 0; i < iters + warmup; i++) {
            if (i == warmup) start = MPI_Wtime();
            double stepStart = MPI_Wtime();
            if (ring) {
                MPI_Sendrecv(send, bytes, MPI_CHAR, next, 5, receive, bytes, MPI_CHAR, previous, 5, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                int n = 0;
                for (int peer = 0; peer < size; peer++)
                    if (peer != rank) MPI_Irecv(windowed + (size_t)peer * bytes, bytes, MPI_CHAR, peer, 6, MPI_COMM_WORLD, &requests[n++]);
                for (int peer = 0; peer < size; peer++)
                    if (peer != rank) MPI_Isend(send, bytes, MPI_CHAR, peer, 6, MPI_COMM_WORLD, &requests[n++]);
                MPI_Waitall(n, requests, MPI_STATUSES_IGNORE);
            }
            if (i >= warmup) steps[i - warmup] = MPI_Wtime() - stepStart;
        }
        seconds = MPI_Wtime() - start;
        messages = (double)iters * (ring ? 1 : size - 1);
    } else {
        if (rank == 0) fprintf(stderr, "osu-style: unknown test %s\n", test);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }

    /* Rank 0 gathers every rank's time, messages and 99th-percentile step. */
    double mine[3] = {seconds, messages, 0};
    if (!strcmp(test, "ring") || !strcmp(test, "allpairs")) {
        qsort(steps, iters, sizeof(double), compare);
        mine[2] = steps[(int)(iters * 0.99) < iters ? (int)(iters * 0.99) : iters - 1];
    }
    double *all = malloc(sizeof(double) * 3 * size);
    MPI_Gather(mine, 3, MPI_DOUBLE, all, 3, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        double value = 0, p99 = 0;
        const char *unit = "msg/s";
        if (!strcmp(test, "latency")) {
            value = all[0] / all[1] * 1e6;
            unit = "us one-way";
        } else if (!strcmp(test, "bw") || !strcmp(test, "mbw_mr")) {
            for (int r = 0; r < size / 2; r++) value += all[3 * r + 1] / all[3 * r];
            if (!strcmp(test, "bw")) { value = value * bytes / 1e6; unit = "MB/s"; }
        } else if (!strcmp(test, "bibw")) {
            value = all[1] * bytes / all[0] / 1e6;
            unit = "MB/s";
        } else {
            for (int r = 0; r < size; r++) {
                value += all[3 * r + 1] / all[3 * r];
                if (all[3 * r + 2] > p99) p99 = all[3 * r + 2];
            }
        }
        if (!strcmp(test, "ring") || !strcmp(test, "allpairs"))
            printf("osu-style %s %ld %.3f %s p99 %.1f\n", test, bytes, value, unit, p99 * 1e6);
        else
            printf("osu-style %s %ld %.3f %s\n", test, bytes, value, unit);
    }
    free(all);
    free(steps);
    free(requests);
    free(windowed);
    free(receive);
    free(send);
    MPI_Finalize();
    return 0;
}
