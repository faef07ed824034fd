"""What scripts/chaos and scripts/soak share: a PostgreSQL server (and a synchronous standby) of
their own, broker replicas, a fleet of three kinds of worker, a steady load of submits and status
reads, the faults, and the checks run from the database and the clients' own records.

Standard library only. Everything runs on 127.0.0.1 in a temporary directory; every process this
module starts is stopped by `Run.close()`.
"""
import glob
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_AS = "postgres" if os.getuid() == 0 else None
API_KEY = "chaos-key-" + uuid.uuid4().hex
MODEL = "chaos/mixed"
LEASE_SECONDS = 4


def say(text):
    print(time.strftime("%H:%M:%S ") + text, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin():
    for directory in os.environ.get("PATH", "").split(":"):
        if os.access(os.path.join(directory, "initdb"), os.X_OK) and os.access(os.path.join(directory, "pg_basebackup"), os.X_OK):
            return directory
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        sys.exit("PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup) are not installed: apt-get install postgresql")
    return os.path.dirname(versions[-1])


def as_postgres(argv):
    return (["runuser", "-u", RUN_AS, "--"] + argv) if RUN_AS else argv


def swift_bin(build, configuration="debug"):
    if build:
        for product in ["spool-broker", "spool-worker", "spool-example-worker"]:
            subprocess.run(["swift", "build", "-c", configuration, "--product", product], cwd=ROOT, check=True)
    return subprocess.run(["swift", "build", "-c", configuration, "--show-bin-path"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


class Postgres:
    """A PostgreSQL server of this run: TCP on 127.0.0.1 (so proxies and standbys can reach it),
    its socket in its own directory, run as the postgres user when this runs as root."""

    def __init__(self, root, name, bindir):
        self.name = name
        self.dir = os.path.join(root, name)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.bin = bindir
        os.makedirs(self.dir)
        if RUN_AS:
            shutil.chown(self.dir, RUN_AS, RUN_AS)

    def tool(self, name, *args, check=True):
        result = subprocess.run(as_postgres([os.path.join(self.bin, name), *args]), cwd=self.dir,
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (name, result.returncode, (result.stderr or result.stdout).strip()[-2000:]))
        return result

    def settings(self):
        return (
            "\n# chaos\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 300\n"
            "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = on\nsynchronous_commit = on\n"
            "autovacuum_naptime = 10s\nlogging_collector = off\n" % (self.port, self.dir))

    def init(self):
        self.tool("initdb", "-D", self.data, "-U", "spool", "--auth=trust", "--encoding=UTF8", "--locale=C")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write(self.settings())

    def standby_of(self, primary):
        """A synchronous streaming standby of `primary`, copied with pg_basebackup."""
        # The application name (in the primary_conninfo -R writes) is what synchronous_standby_names names.
        self.tool("pg_basebackup", "-d", "host=127.0.0.1 port=%d user=spool application_name=%s" % (primary.port, self.name),
                  "-D", self.data, "-R", "-X", "stream", "--checkpoint=fast")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write(self.settings())
        with open(os.path.join(primary.data, "postgresql.conf"), "a") as conf:
            conf.write("synchronous_standby_names = '\"%s\"'\n" % self.name)
        primary.tool("pg_ctl", "-D", primary.data, "reload")

    def wait_synchronous(self, primary, timeout=60):
        """Until `primary` reports this standby as synchronous: from then on every commit it
        acknowledges is on both."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            rows = primary.sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = '%s'" % self.name, database="postgres")
            if rows and rows[0][0] == "sync":
                return
            time.sleep(0.5)
        raise RuntimeError("the standby %s never became synchronous" % self.name)

    def start(self):
        self.tool("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode="fast"):
        self.tool("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def promote(self):
        self.tool("pg_ctl", "-D", self.data, "-w", "promote")

    def running(self):
        return self.tool("pg_ctl", "-D", self.data, "status", check=False).returncode == 0

    def sql(self, query, database="chaos"):
        # The server's own psql (beside initdb): a machine with only the server binaries has no psql on PATH.
        psql = os.path.join(self.bin, "psql")
        result = subprocess.run([psql if os.path.exists(psql) else "psql", "-h", self.dir, "-p", str(self.port), "-U", "spool", "-d", database, "-AtX",
                                 "-F", "\t", "-c", query], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError("psql: %s" % result.stderr.strip())
        return [line.split("\t") for line in result.stdout.splitlines() if line]


class Proc:
    """A child process of this run with its output in a log file; its own session, so a kill
    reaches the children it started (as a host's death would)."""

    def __init__(self, name, argv, env, directory):
        self.name, self.argv, self.env = name, argv, env
        self.log = os.path.join(directory, name + ".log")
        self.process = None
        self.start()

    def start(self):
        log = open(self.log, "a")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=dict(os.environ, **self.env), cwd=ROOT, start_new_session=True)
        log.close()

    def signal(self, sig, group=False):
        if self.process.poll() is None:
            (os.killpg if group else os.kill)(self.process.pid, sig)

    def alive(self):
        return self.process.poll() is None

    def stop(self, timeout=20):
        """SIGTERM, then the seconds it took to exit, or None if it had to be killed."""
        if self.process.poll() is not None:
            return 0.0
        start = time.time()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
            return time.time() - start
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return None

    def text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Flow:
    """One relayed connection; `frozen` stops its bytes while it stays open."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port  # what the server sees as the client's port
        self.moving = threading.Event()
        self.moving.set()


class Proxy:
    """A TCP relay to a port. `blackhole()` stops moving bytes either way while connections stay
    open (a host cut off the network: its packets vanish, nothing is reset); `heal()` moves them
    again. `freeze(ports)` does the same to the connections the server sees from those ports only."""

    def __init__(self, target_port):
        self.target = target_port
        self.flowing = threading.Event()
        self.flowing.set()
        self.flows = []
        self.flows_lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.connect, args=(client,), daemon=True).start()

    def connect(self, client):
        self.flowing.wait()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            client.close()
            return
        flow = Flow(upstream.getsockname()[1])
        with self.flows_lock:
            self.flows.append(flow)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self.pump, args=(source, sink, flow), daemon=True).start()

    def pump(self, source, sink, flow):
        import select
        try:
            while True:
                self.flowing.wait()
                flow.moving.wait()
                readable, _, _ = select.select([source], [], [], 0.2)
                if not readable or not self.flowing.is_set() or not flow.moving.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def freeze(self, ports):
        """Stops the connections the server sees from `ports`; returns how many."""
        with self.flows_lock:
            frozen = [flow for flow in self.flows if flow.upstream_port in ports]
        for flow in frozen:
            flow.moving.clear()
        return len(frozen)

    def thaw(self):
        with self.flows_lock:
            for flow in self.flows:
                flow.moving.set()

    def blackhole(self):
        self.flowing.clear()

    def heal(self):
        self.flowing.set()


def http(method, url, body=None, headers=None, timeout=5):
    """(status, parsed JSON or None); status 0 when the broker could not be reached."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    request.add_header("Authorization", "Bearer " + API_KEY)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None
    except (OSError, ValueError):
        return 0, None


class Load:
    """A steady stream of submits, each with an Idempotency-Key and retried across the replicas
    until one acknowledges it, and of status reads of acknowledged jobs."""

    def __init__(self, brokers, rate, readers=4):
        self.brokers = brokers
        self.rate = rate
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # idempotency key -> request id
        self.acked_at = {}  # idempotency key -> when it was first acknowledged
        self.conflicting = []  # keys answered with two different ids
        self.attempted = 0
        self.unacknowledged = 0
        self.submit_errors = 0
        self.reads = 0
        self.read_errors = 0
        self.threads = [threading.Thread(target=self.submitter, args=(i, 4), daemon=True) for i in range(4)]
        self.threads += [threading.Thread(target=self.reader, daemon=True) for _ in range(readers)]
        for thread in self.threads:
            thread.start()

    def submitter(self, index, count):
        interval = count / self.rate
        next_at = time.time() + index * interval / count
        n = 0
        while not self.stop.is_set():
            time.sleep(max(0, next_at - time.time()))
            next_at += interval
            n += 1
            key = uuid.uuid4().hex
            payload = {"prompt": "job %d-%d" % (index, n), "steps": 2, "mode": "sleep", "seconds": 0.3, "n": n}
            with self.lock:
                self.attempted += 1
            deadline = time.time() + 60
            while time.time() < deadline:
                for broker in random.sample(self.brokers, len(self.brokers)):
                    status, answer = http("POST", broker() + "/v1/queue/submit", {"model": MODEL, "payload": payload},
                                          {"Idempotency-Key": key})
                    if status == 200 and answer and answer.get("requestId"):
                        with self.lock:
                            previous = self.acked.setdefault(key, answer["requestId"])
                            self.acked_at.setdefault(key, time.time())
                            if previous != answer["requestId"]:
                                self.conflicting.append(key)
                        break
                    with self.lock:
                        self.submit_errors += 1
                else:
                    time.sleep(0.2)
                    continue
                break
            else:
                with self.lock:
                    self.unacknowledged += 1

    def reader(self):
        while not self.stop.is_set():
            with self.lock:
                ids = list(self.acked.values())
            if not ids:
                time.sleep(0.1)
                continue
            broker = random.choice(self.brokers)()
            status, _ = http("GET", broker + "/v1/queue/status?model=%s&request_id=%s" % (MODEL, random.choice(ids)), timeout=5)
            with self.lock:
                self.reads += 1
                if status != 200:
                    self.read_errors += 1
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(70)


class Run:
    """PostgreSQL (with a synchronous standby when `failover`), broker replicas, the three kinds of
    worker and the load; the faults act on them, the checks read what they left."""

    def __init__(self, replicas=2, failover=False, rate=10, build=True, keep=False, extra_broker_args=(), configuration="debug"):
        self.keep = keep
        self.root = tempfile.mkdtemp(prefix="spool-chaos-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.bin = swift_bin(build, configuration)
        pgbin = postgres_bin()
        say("PostgreSQL from %s; everything under %s" % (pgbin, self.root))
        self.primary = Postgres(self.root, "pg-primary", pgbin)
        self.primary.init()
        self.primary.start()
        self.primary.sql("CREATE DATABASE chaos", database="postgres")
        self.standby = None
        if failover:
            self.standby = Postgres(self.root, "pg-standby", pgbin)
            self.standby.standby_of(self.primary)
            self.standby.start()
            self.standby.wait_synchronous(self.primary)
        # The brokers reach PostgreSQL through relays, so one of their connections can be frozen alone.
        self.db_proxies = {self.primary.name: Proxy(self.primary.port)}
        if self.standby:
            self.db_proxies[self.standby.name] = Proxy(self.standby.port)
        hosts = ",".join("127.0.0.1:%d" % proxy.port for proxy in self.db_proxies.values())
        self.database_url = "postgres://spool@%s/chaos" % hosts + ("?target_session_attrs=read-write" if self.standby else "")
        self.broker_ports = [free_port() for _ in range(replicas)]
        self.brokers = [
            Proc("broker-%d" % i, [os.path.join(self.bin, "spool-broker"), "--database-url", self.database_url, "--port", str(port),
                                   "--api-key", API_KEY, "--retry-limit", "50", *extra_broker_args], {}, self.root)
            for i, port in enumerate(self.broker_ports)]
        for i in range(replicas):
            self.wait_for_broker(i)
        urls = ["http://127.0.0.1:%d" % port for port in self.broker_ports]
        # The protocol worker reaches the brokers through proxies: its partition.
        self.proxies = [Proxy(port) for port in self.broker_ports]
        self.write_log = os.path.join(self.root, "protocol-writes.jsonl")
        handler = "%s %s/Tests/sdk/exec_handler.py" % (sys.executable, ROOT)
        brokers = sum((["--broker", url] for url in urls), [])
        self.workers = {
            "exec": Proc("worker-exec", [os.path.join(self.bin, "spool-worker"), *brokers, "--model", MODEL, "--exec", handler,
                                         "--concurrency", "4", "--lease-seconds", str(LEASE_SECONDS), "--api-key", API_KEY], {},
                         self.root),
            "swift": Proc("worker-swift", [os.path.join(self.bin, "spool-example-worker")],
                          {"SPOOL_BROKER_URL": ",".join(urls), "SPOOL_MODELS": MODEL, "SPOOL_CONCURRENCY": "8",
                           "SPOOL_LEASE_SECONDS": str(LEASE_SECONDS), "SPOOL_API_KEY": API_KEY}, self.root),
            "protocol": Proc("worker-protocol", [sys.executable, "-u", os.path.join(ROOT, "Examples/protocol_worker.py")],
                             {"SPOOL_BROKER_URL": ",".join("http://127.0.0.1:%d" % p.port for p in self.proxies),
                              "SPOOL_MODELS": MODEL, "SPOOL_CONCURRENCY": "8", "SPOOL_LEASE_SECONDS": str(LEASE_SECONDS),
                              "SPOOL_API_KEY": API_KEY, "SPOOL_WRITE_LOG": self.write_log, "SPOOL_DRAIN_SECONDS": "5"}, self.root),
        }
        self.load = None
        self.rate = rate
        self.faults = []  # (name, started, healed, note)
        self.down = set()  # brokers killed and not yet back

    def url(self, index):
        return lambda: "http://127.0.0.1:%d" % self.broker_ports[index]

    def wait_for_broker(self, index, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if http("GET", "http://127.0.0.1:%d/healthz" % self.broker_ports[index], timeout=1)[0] == 200:
                return
            if not self.brokers[index].alive():
                raise RuntimeError("broker-%d exited:\n%s" % (index, self.brokers[index].text()[-3000:]))
            time.sleep(0.1)
        raise RuntimeError("broker-%d did not start" % index)

    def start_load(self):
        self.load = Load([self.url(i) for i in range(len(self.brokers))], self.rate)

    def current_primary(self):
        if self.standby and self.standby.running():
            rows = self.standby.sql("SELECT pg_is_in_recovery()")
            if rows and rows[0][0] == "f":
                return self.standby
        return self.primary

    def close(self):
        for proc in list(self.workers.values()) + self.brokers:
            if proc.alive():
                proc.signal(signal.SIGKILL, group=True)
        for pg in (self.primary, self.standby):
            if pg:
                pg.stop("immediate")
        if self.keep:
            say("kept %s" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
