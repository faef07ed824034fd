"""Measure pgqueuer (https://github.com/janbjorge/pgqueuer) as a peer for spool-bench.

Run by `spool-bench --peers` in a venv holding `pgqueuer[asyncpg]==1.6.0`, against a fresh,
empty PostgreSQL database. pgqueuer is driven the way its own `tools/benchmark.py` and
performance-tuning guide drive it: asyncpg, one connection per PgQueuer worker (a pool for
producers), uvloop, default `durable` (WAL-logged) tables plus `pgq autovac`'s per-table
autovacuum settings, no PostgreSQL setting changed. Every scenario, and every process count
of drain, starts from an empty queue (pgqueuer's tables truncated).

Figures (rates in jobs/s, latencies in ms); the last stdout line is one JSON object:
  pgqueuer_version              the installed pgqueuer version.
  enqueue_jobs_per_s            --jobs jobs enqueued by `Queries.enqueue(lists)` in calls of 1,000
                                jobs, one connection.
  enqueue_single_jobs_per_s     min(--jobs, 20000) jobs enqueued one per call by 32 asyncio tasks
                                sharing a 32-connection pool.
  drain_jobs_per_s_P            --jobs no-op jobs enqueued untimed, then P worker processes (one
                                PgQueuer each, batch_size=--batch, unlimited concurrency) empty
                                the queue; timed from the go signal (connections already open)
                                until every handler has run and pgqueuer's queue table is empty,
                                i.e. every completion is committed.
  drain_cpu_us_workers_P        the worker processes' user+sys CPU over that window, per job.
  drain_cpu_us_postgres_P       the PostgreSQL cluster's user+sys CPU over that window, per job
                                (postmaster and all its children, exited backends included).
  drain_best_jobs_per_s         the best drain_jobs_per_s_P.
  pickup_p50_ms/_p99_ms/_max_ms one idle worker (pgqueuer's defaults, LISTEN/NOTIFY wake-up);
                                20 ms pause, then one job enqueued on an open connection; latency =
                                handler start - time before the enqueue call (CLOCK_MONOTONIC is
                                system-wide). Nearest-rank percentiles over --pickups samples
                                after 10 warm-up jobs.
  pickup_enqueue_p50_ms         median duration of those single enqueue calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import time

try:
    import asyncpg
    import pgqueuer
    from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, PgQueuer, Queries
except ImportError as error:
    sys.exit(f"pgqueuer_peer: {error}; install with: pip install 'pgqueuer[asyncpg]==1.6.0'")

ENTRYPOINT = "noop"
BULK_CHUNK = 1_000  # peer of Spool's bulk submit of up to 1,000 jobs per request
SINGLE_CLIENTS = 32  # peer of spool-bench's 32 concurrent HTTP submitters
SINGLE_MAX_JOBS = 20_000
PICKUP_WARMUP = 10
PICKUP_PAUSE_S = 0.020
SPAWN = mp.get_context("spawn")  # a fresh interpreter per worker: no inherited event loop


def log(message: str) -> None:
    print(f"pgqueuer_peer: {message}", file=sys.stderr, flush=True)


def run(coroutine):
    """Run on uvloop when present, as pgqueuer's CLI and benchmark do."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def payload(index: int) -> bytes:
    return b'{"i":%d}' % index  # the same small JSON body spool-bench submits


# --- CPU accounting from /proc ----------------------------------------------------------

def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: [1] is ppid, [11:15] the CPU times."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def cpu_ticks(pid: int) -> int:
    """utime+stime+cutime+cstime of one process, in clock ticks."""
    return sum(int(value) for value in proc_stat(pid)[11:15])


def postgres_ticks(postmaster: int) -> int:
    """CPU of one PostgreSQL cluster: the postmaster, its live children, and (through the
    postmaster's cutime/cstime) every child it has reaped, so exiting backends are not lost."""
    total = cpu_ticks(postmaster)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = proc_stat(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        if int(fields[1]) == postmaster:
            total += sum(int(value) for value in fields[11:15])
    return total


def ticks_to_us_per_job(ticks: int, jobs: int) -> float:
    return round(ticks * 1e6 / os.sysconf("SC_CLK_TCK") / jobs, 1)


# --- Shared helpers ---------------------------------------------------------------------

async def reset(queries: Queries) -> None:
    """Empty pgqueuer's queue, log and statistics tables."""
    await queries.clear_queue()
    await queries.clear_queue_log()
    await queries.clear_statistics_log()


async def enqueue_bulk(queries: Queries, jobs: int) -> None:
    for start in range(0, jobs, BULK_CHUNK):
        count = min(BULK_CHUNK, jobs - start)
        await queries.enqueue(
            [ENTRYPOINT] * count,
            [payload(start + i) for i in range(count)],
            [0] * count,
        )


def stop_workers(processes: list) -> None:
    """SIGTERM makes each worker set pgqueuer's shutdown event and exit after flushing."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(15)
        if process.is_alive():
            log(f"worker {process.pid} ignored SIGTERM; killing it")
            process.kill()
            process.join()


async def serve(dsn: str, batch_size: int, register, ready) -> None:
    """One pgqueuer worker: connect, register the handler, call ready(), run until SIGTERM."""
    connection = await asyncpg.connect(dsn)
    pgq = PgQueuer(AsyncpgDriver(connection))
    register(pgq)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    ready()
    await pgq.run(batch_size=batch_size)
    await connection.close()


# --- Worker processes (top-level so the spawn start method can import them) -------------

def drain_worker(dsn, batch_size, total, handled, all_handled, barrier, go) -> None:
    def register(pgq: PgQueuer) -> None:
        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job) -> None:
            with handled.get_lock():
                handled.value += 1
                last = handled.value >= total
            if last:
                all_handled.set()

    def ready() -> None:
        barrier.wait()  # connected and registered; connection setup stays untimed
        go.wait()

    run(serve(dsn, batch_size, register, ready))


def pickup_worker(dsn, batch_size, sender) -> None:
    def register(pgq: PgQueuer) -> None:
        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job) -> None:
            started = time.monotonic_ns()
            sender.send((json.loads(job.payload)["i"], started))

    run(serve(dsn, batch_size, register, lambda: sender.send("ready")))


# --- Scenarios --------------------------------------------------------------------------

async def bench_enqueue(dsn: str, queries: Queries, jobs: int) -> dict:
    await reset(queries)
    started = time.perf_counter()
    await enqueue_bulk(queries, jobs)
    bulk_rate = jobs / (time.perf_counter() - started)
    log(f"enqueue bulk: {bulk_rate:,.0f} jobs/s")

    await reset(queries)
    single_jobs = min(jobs, SINGLE_MAX_JOBS)
    indexes = iter(range(single_jobs))
    pool = await asyncpg.create_pool(dsn, min_size=SINGLE_CLIENTS, max_size=SINGLE_CLIENTS)
    producer = Queries(AsyncpgPoolDriver(pool))

    async def client() -> None:
        for index in indexes:  # the shared iterator hands each index to one client
            await producer.enqueue(ENTRYPOINT, payload(index))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(SINGLE_CLIENTS)))
    single_rate = single_jobs / (time.perf_counter() - started)
    await pool.close()
    log(f"enqueue single ({SINGLE_CLIENTS} clients): {single_rate:,.0f} jobs/s")
    return {
        "enqueue_jobs_per_s": round(bulk_rate, 1),
        "enqueue_single_jobs_per_s": round(single_rate, 1),
    }


async def queue_is_empty(queries: Queries) -> bool:
    table = queries.qbe.settings.qualified.queue_table
    return not await queries.driver.fetch(f"SELECT 1 FROM {table} LIMIT 1")


async def bench_drain(
    dsn: str, queries: Queries, postmaster: int, jobs: int, processes: int, batch: int
) -> dict:
    await reset(queries)
    await enqueue_bulk(queries, jobs)
    handled, all_handled = SPAWN.Value("q", 0), SPAWN.Event()
    barrier, go = SPAWN.Barrier(processes + 1), SPAWN.Event()
    arguments = (dsn, batch, jobs, handled, all_handled, barrier, go)
    workers = [SPAWN.Process(target=drain_worker, args=arguments) for _ in range(processes)]
    try:
        for worker in workers:
            worker.start()
        barrier.wait(timeout=120)
        workers_before = sum(cpu_ticks(worker.pid) for worker in workers)
        postgres_before = postgres_ticks(postmaster)
        started = time.perf_counter()
        go.set()
        while not all_handled.wait(1.0):
            if not all(worker.is_alive() for worker in workers):
                raise RuntimeError("a drain worker exited early")
        # Completions are buffered per worker (flushed at batch_size or every ~0.1 s);
        # a job is done once its row has left the queue table.
        while not await queue_is_empty(queries):
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
        postgres_used = postgres_ticks(postmaster) - postgres_before
        workers_used = sum(cpu_ticks(worker.pid) for worker in workers) - workers_before
    finally:
        stop_workers(workers)
    rate = jobs / elapsed
    log(f"drain with {processes} process(es): {rate:,.0f} jobs/s over {elapsed:.2f} s")
    return {
        f"drain_jobs_per_s_{processes}": round(rate, 1),
        f"drain_cpu_us_workers_{processes}": ticks_to_us_per_job(workers_used, jobs),
        f"drain_cpu_us_postgres_{processes}": ticks_to_us_per_job(postgres_used, jobs),
    }


def nearest_rank(sorted_values: list[float], percentile: float) -> float:
    return sorted_values[max(0, math.ceil(percentile / 100 * len(sorted_values)) - 1)]


async def bench_pickup(dsn: str, queries: Queries, pickups: int) -> dict:
    await reset(queries)
    receiver, sender = SPAWN.Pipe(duplex=False)
    # pgqueuer's default batch_size (10): pickup latency comes from its LISTEN/NOTIFY wake-up.
    worker = SPAWN.Process(target=pickup_worker, args=(dsn, 10, sender))
    latencies, enqueue_times = [], []
    try:
        worker.start()
        if not receiver.poll(120) or receiver.recv() != "ready":
            raise RuntimeError("pickup worker did not start")
        for index in range(PICKUP_WARMUP + pickups):
            await asyncio.sleep(PICKUP_PAUSE_S)  # let the worker go idle again
            before = time.monotonic_ns()
            await queries.enqueue(ENTRYPOINT, payload(index))
            enqueued = time.monotonic_ns()
            if not receiver.poll(30):
                raise RuntimeError(f"pickup job {index} was not started within 30 s")
            job_index, handler_start = receiver.recv()
            if job_index != index:
                raise RuntimeError(f"expected pickup job {index}, got {job_index}")
            if index >= PICKUP_WARMUP:
                latencies.append((handler_start - before) / 1e6)
                enqueue_times.append((enqueued - before) / 1e6)
    finally:
        stop_workers([worker])
    latencies.sort()
    enqueue_times.sort()
    result = {
        "pickup_p50_ms": round(nearest_rank(latencies, 50), 3),
        "pickup_p99_ms": round(nearest_rank(latencies, 99), 3),
        "pickup_max_ms": round(latencies[-1], 3),
        "pickup_enqueue_p50_ms": round(nearest_rank(enqueue_times, 50), 3),
    }
    log(f"pickup: {result}")
    return result


async def bench(args: argparse.Namespace) -> dict:
    connection = await asyncpg.connect(args.dsn)
    queries = Queries(AsyncpgDriver(connection))
    if await queries.schema_is_installed():
        await queries.uninstall()
    await queries.install()
    await queries.optimize_autovacuum()  # `pgq autovac`, on pgqueuer's tuning checklist
    # The postmaster is our backend's parent; its process tree is the cluster whose CPU we count.
    postmaster = int(proc_stat(await connection.fetchval("SELECT pg_backend_pid()"))[1])
    result: dict = {"pgqueuer_version": pgqueuer.__version__}
    try:
        if args.scenario in ("enqueue", "all"):
            result |= await bench_enqueue(args.dsn, queries, args.jobs)
        if args.scenario in ("drain", "all"):
            for processes in args.processes:
                result |= await bench_drain(
                    args.dsn, queries, postmaster, args.jobs, processes, args.batch
                )
            rates = [result[f"drain_jobs_per_s_{p}"] for p in args.processes]
            result["drain_best_jobs_per_s"] = max(rates)
        if args.scenario in ("pickup", "all"):
            result |= await bench_pickup(args.dsn, queries, args.pickups)
        await reset(queries)
    finally:
        await connection.close()
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="e.g. postgres://user@/db?host=/socket/dir")
    parser.add_argument("--scenario", choices=("enqueue", "drain", "pickup", "all"), default="all")
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs for enqueue and drain")
    parser.add_argument(
        "--processes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 4],
        help="comma-separated worker process counts for drain",
    )
    parser.add_argument("--batch", type=int, default=100, help="dequeue batch_size for drain")
    parser.add_argument("--pickups", type=int, default=500, help="pickup samples after 10 warm-ups")
    parser.add_argument("--quick", action="store_true", help="small counts: 2,000 jobs, 30 pickups")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.pickups = 2_000, 30
    if args.jobs < 1 or args.pickups < 1 or args.batch < 1 or min(args.processes) < 1:
        parser.error("--jobs, --pickups, --batch and --processes must be positive")
    return args


if __name__ == "__main__":
    print(json.dumps(run(bench(parse_args()))), flush=True)
