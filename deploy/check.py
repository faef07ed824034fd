#!/usr/bin/env python3
"""Static checks of Spool's deployment files: everything under deploy/ and docker-compose.yml.

    python -m pip install -r deploy/requirements.txt
    python deploy/check.py [--root DIR]   # exit 0 when every check passes, 1 otherwise

Nothing is built, pulled or run. The YAML (a key given twice in one mapping is an error) is validated against schemas:
kubernetes-validate's (strict), deploy/schemas/keda.schema.json for KEDA, the Compose specification vendored by
check-jsonschema. Then the files are cross-checked with each other and with the repository: Package.swift, the paths
the Dockerfile copies, and what the Swift sources declare (the executables' flags, SPOOL_* variables and defaults, the
broker's health routes and metrics). Prints one line per check: "ok", or "FAIL" with the reasons under it.
"""

import argparse
import glob
import importlib.metadata
import importlib.resources
import json
import posixpath
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as error:  # pragma: no cover - the message is the point
    print(f"FAIL  imports: {error}")
    print("      install the checker's packages first: python -m pip install -r deploy/requirements.txt")
    sys.exit(2)

KUBERNETES_VERSION = "1.34.0"  # whose schemas (bundled with kubernetes-validate) the manifests must meet
LONG_POLL_SECONDS = 30  # lease long-polls; status streams stay open for minutes
DATABASE_TIMEOUT_SECONDS = 2  # what /readyz gives the database (Sources/SpoolBroker/OperationsRoutes.swift)
MULTIPART_ALLOWANCE = 64 * 1024  # what a multipart POST /v1/files may add to --max-file-bytes (FileRoutes.swift)
# Request paths: the upload routes take bodies up to --max-file-bytes, streamed; the others up to --max-body-bytes.
UPLOAD_PATHS = ["/v1/files", "/v1/files/file-1/upload", "/v1/worker/jobs/job-1/files"]
OTHER_PATHS = ["/v1/queue/submit", "/fal/acme/gen/requests/job-1/status/stream", "/v1/files/file-1/content"]
SIZES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
TIMES = {"": 1, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# The fields of a manifest that name another object (and maybe a key in it), and that object's kind.
REFERENCES = {"secretKeyRef": "Secret", "secretRef": "Secret", "secret": "Secret", "secretTargetRef": "Secret",
              "configMapKeyRef": "ConfigMap", "configMapRef": "ConfigMap", "configMap": "ConfigMap",
              "authenticationRef": "TriggerAuthentication", "scaleTargetRef": "Deployment"}


class Failed(Exception):
    """The files cannot be checked; the message says why."""


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error, not a silent overwrite."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        keys = [self.construct_object(k, deep=True) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        if duplicates := [k for k in keys if keys.count(k) > 1]:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {duplicates[0]!r}", node.start_mark)
        return super().construct_mapping(node, deep)


def schema_problems(schema: dict, instance: Any) -> Iterator[str]:
    errors = jsonschema.validators.validator_for(schema)(schema).iter_errors(instance)
    errors = (jsonschema.exceptions.best_match([e]) for e in errors)  # the reason inside a oneOf or anyOf
    yield from sorted({f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors})


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def env_value(container: dict, name: str) -> str | None:
    return next((e.get("value") for e in container.get("env") or [] if e["name"] == name), None)


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    pairs = (item.partition("=")[::2] for item in env) if isinstance(env, list) else env.items()
    return {k: "" if v is None else str(v) for k, v in pairs}


def nginx_value(value: str, units: dict[str, float]) -> float:
    """An nginx size (11m) or time (3600s, 1m30s) in bytes or seconds."""
    parts = re.findall(r"(\d+)([a-z]*)", value.lower())
    if not parts or "".join(n + u for n, u in parts) != value.lower() or any(u not in units for _, u in parts):
        raise Failed(f"deploy/nginx.conf: cannot read {value!r}")
    return sum(int(n) * units[u] for n, u in parts)


def nginx_tree(text: str) -> tuple:
    """nginx.conf as nested (name, args, children) directives: each ends with ';' or is a braced block."""
    stack: list[tuple] = [("main", [], [])]
    words: list[str] = []
    for token in re.findall(r"#[^\n]*|\"[^\"]*\"|'[^']*'|[{};]|[^\s{};]+", text):
        if token in ("{", ";", "}") and (token == "}") == bool(words) or token == "}" and len(stack) == 1:
            raise Failed(f"deploy/nginx.conf: unexpected {token!r} after {' '.join(words) or 'nothing'}")
        if token in ("{", ";"):
            stack[-1][2].append((words[0], words[1:], []))
            stack, words = stack + [stack[-1][2][-1]] if token == "{" else stack, []
        elif token == "}":
            stack.pop()
        elif not token.startswith("#"):
            words.append(token[1:-1] if token[0] in "\"'" else token)
    if words or len(stack) > 1:
        raise Failed("deploy/nginx.conf: a directive lacks its ';' or a block its '}'")
    return stack[0]


def find(block: tuple, name: str, deep: bool = False) -> list[tuple]:
    return [d for c in block[2] for d in ([c] if c[0] == name else []) + (find(c, name, True) if deep else [])]


def location_for(server: tuple, path: str) -> tuple | None:
    """nginx's choice: an `=` match, else the longest prefix if `^~`, else the first matching regex, else the longest prefix."""
    prefix = regex = None
    for location in find(server, "location"):
        modifier, pattern = location[1] if len(location[1]) == 2 else ("", location[1][0])
        if modifier == "=" and pattern == path:
            return location
        if modifier in ("", "^~") and path.startswith(pattern) and len(pattern) > len(prefix[1][-1] if prefix else ""):
            prefix = location
        if modifier in ("~", "~*") and not regex and re.search(pattern, path, re.I if modifier == "~*" else 0):
            regex = location
    return prefix if prefix and prefix[1][0] == "^~" else regex or prefix


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """The (KEYWORD, arguments) instructions of each stage: comments dropped, continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    for line in re.sub(r"\\\n", " ", re.sub(r"^\s*#.*\n", "", text, flags=re.M)).splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        elif keyword and stages:
            stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def copy_sources(stage: list[tuple[str, str]], from_stage: bool) -> list[str]:
    """The sources of a stage's COPY and ADD instructions: those --from another stage, or those of the build context."""
    sources = []
    for keyword, rest in stage:
        words = shlex.split(rest) if keyword in ("COPY", "ADD") else []
        if words and any(w.startswith("--from") for w in words) == from_stage:
            sources += (json.loads(rest[rest.index("["):]) if "[" in rest else [w for w in words if w[:2] != "--"])[:-1]
    return sources


def references(node: Any, where: str) -> Iterator[tuple[str, str, str, str | None, bool]]:
    """(where, kind, name, key or None, optional) of each reference (REFERENCES) inside a manifest."""
    for key, value in node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ():
        for ref in (value if isinstance(value, list) else [value]) if key in REFERENCES else []:
            if isinstance(ref, dict):
                kind, name = ref.get("kind", REFERENCES[key]), ref.get("secretName") or ref.get("name")
                yield f"{where}.{key}", kind, name, ref.get("key"), bool(ref.get("optional"))
        yield from references(value, f"{where}.{key}")


class Deploy:
    """The files and what the Swift sources declare. Each check_* method, titled by its docstring, yields its problems."""

    def __init__(self, root: Path):
        self.root, self.yaml = root, {}
        for path in sorted((root / "deploy").rglob("*.y*ml")) + [root / "docker-compose.yml"]:
            with path.open() as stream:  # a stream, so error marks name the file
                self.yaml[str(path.relative_to(root))] = [d for d in yaml.load_all(stream, Loader=Loader) if d is not None]
        self.objects = [(p, o) for p, docs in self.yaml.items() if p.startswith("deploy/kubernetes/") for o in docs]
        if strays := sorted({p for p, o in self.objects if not isinstance(o, dict)}):
            raise Failed(f"{', '.join(strays)}: a document is not a mapping")
        self.services = self.yaml["docker-compose.yml"][0]["services"]
        self.service_urls = set()  # (host, port) of each Service, by each name it has in the cluster
        for service in self.kind("Service"):
            name, namespace = service["metadata"]["name"], service["metadata"].get("namespace", "default")
            hosts = (name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local")
            self.service_urls |= {(host, p["port"]) for host in hosts for p in service["spec"]["ports"]}

        self.env_names = set(re.findall(r"SPOOL_[A-Z0-9_]+", self.swift("Sources/**/*.swift")))
        help_text = self.swift("Sources/spool-broker/*.swift") + self.swift("Sources/spool-worker/*.swift")
        self.defaults = {k: int(v) for k, v in re.findall(r'Env: (SPOOL_\w+)\b[^"]*?Default: (\d+)\b', help_text)}
        routes = self.swift("Sources/SpoolBroker/OperationsRoutes.swift")
        self.routes = {"/" + route for route in re.findall(r'\.get\("([^"]+)"', routes)}
        metrics = re.findall(r'"(spool_(?:\w|\\\(\w+\))+)"', self.swift("Sources/SpoolBroker/BrokerMetrics.swift"))
        self.metrics = [re.sub(r"\\\(\w+\)", r"\\w+", m) for m in metrics]  # spool_jobs_\(event)_total: spool_jobs_\w+_total
        queue = re.search(r"QueueMetricsResponse\b[^{]*\{(.*?)\n\}", self.swift("Sources/SpoolCore/QueueAPI.swift"), re.S)
        self.queue_fields = re.findall(r"\bvar\s+(\w+)\s*:", queue[1]) if queue else []
        package = re.sub(r"//[^\n]*", "", self.swift("Package.swift"))
        self.flags = {p: {"help", "version"} for p in re.findall(r'\.executable\(\s*name:\s*"([^"]+)"', package)}
        for program, flags in self.flags.items():  # @Option and @Flag properties, kebab-cased as ArgumentParser does
            swift = self.swift(f"Sources/{program}/**/*.swift")
            for body, var in re.findall(r"@(?:Option|Flag)\b(.*?)\bvar\s+(\w+)", swift, re.S):
                kebab = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", var).lower()
                flags.add(m[1] if (m := re.search(r'\.customLong\("([^"]+)"', body)) else kebab)

        self.stages = dockerfile_stages((root / "deploy" / "Dockerfile").read_text())
        if len(self.stages) < 2:
            raise Failed(f"deploy/Dockerfile has {len(self.stages)} stage(s); expected a build stage and a runtime stage")
        self.binaries = {posixpath.basename(source) for source in copy_sources(self.stages[-1], from_stage=True)}
        cmd = ([rest for keyword, rest in self.stages[-1] if keyword == "CMD"] or [""])[-1]
        self.cmd = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
        self.nginx = nginx_tree((root / "deploy" / "nginx.conf").read_text())

        self.containers = []  # (object, pod spec, container, argv) of each container of the image of deploy/Dockerfile
        for _, obj in self.objects:
            pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                if re.fullmatch(r"(.*/)?spool([:@].*)?", c.get("image", "")):
                    argv = c["command"] + c.get("args", []) if c.get("command") else c.get("args") or self.cmd
                    self.containers.append((obj, pod, c, argv))
        built = {s.get("image") for s in self.services.values() if "build" in s}
        self.compose = {}  # name: (service, argv) of each compose service that builds the image or runs it
        for name, s in self.services.items():
            if "build" in s or s.get("image") in built:
                command = s.get("command") or self.cmd
                self.compose[name] = (s, shlex.split(command) if isinstance(command, str) else command)

    def swift(self, pattern: str) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob(pattern)))

    def kind(self, kind: str) -> list[dict]:
        return [obj for _, obj in self.objects if obj.get("kind") == kind]

    def running(self, program: str) -> list[tuple[dict, dict, dict, list[str]]]:
        return [entry for entry in self.containers if entry[3][:1] == [program]]

    def reaches_service(self, url: str, what: str) -> Iterator[str]:
        if ((parts := urlsplit(url)).hostname, parts.port or {"https": 443}.get(parts.scheme, 80)) not in self.service_urls:
            yield f"{what} {url!r} is not a Service of deploy/kubernetes/ on one of its ports"

    def schema(self, obj: dict) -> Iterator[str]:
        """The object against kubernetes-validate's schemas, or against deploy/schemas/keda.schema.json if it is KEDA's."""
        if str(obj.get("apiVersion")).startswith("keda.sh/"):
            schema = json.loads((self.root / "deploy" / "schemas" / "keda.schema.json").read_text())
            if obj.get("kind") not in {ref["$ref"].rsplit("/", 1)[-1] for ref in schema["oneOf"]}:
                yield f"kind {obj.get('kind')!r} is not one deploy/schemas/keda.schema.json knows"
            else:  # against its kind's definition alone, for errors that say what is wrong
                schema = {k: v for k, v in schema.items() if k != "oneOf"} | {"$ref": f"#/$defs/{obj['kind']}"}
                yield from schema_problems(schema, obj)
            return
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            yield f"{'.'.join(map(str, error.path)) or '(top)'}: {error.message}"

    def check_compose_schema(self) -> Iterator[str]:
        """docker-compose.yml against the Compose specification schema (vendored by check-jsonschema)"""
        resource = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
        yield from schema_problems(json.loads(resource.read_text()), self.yaml["docker-compose.yml"][0])

    def check_dockerfile(self) -> Iterator[str]:
        """Dockerfile: each --product is an executable of Package.swift, copied to the image; COPY sources exist"""
        runs = " ".join(rest for stage in self.stages[:-1] for keyword, rest in stage if keyword == "RUN")
        built = re.findall(r"--product[ =]([\w.-]+)", runs)
        yield from (f"--product {p} is not an executable product in Package.swift" for p in built if p not in self.flags)
        yield from (f"{p} is built, but not copied --from the build stage" for p in built if p not in self.binaries)
        for source in (source for stage in self.stages for source in copy_sources(stage, from_stage=False)):
            if not glob.has_magic(source) and not (self.root / source).exists():
                yield f"COPY {source}: no such file or directory in the repository"

    def check_commands(self) -> Iterator[str]:
        """containers and compose services of the image run its programs, with their flags and SPOOL_* variables"""
        runs = [(f"{name_of(o)} container {c['name']}", argv, [e["name"] for e in c.get("env") or []])
                for o, _, c, argv in self.containers]
        runs += [(f"compose service {name}", argv, list(compose_env(s))) for name, (s, argv) in self.compose.items()]
        for what, argv, env in runs:
            if (program := (argv or [""])[0]) not in self.binaries:
                yield f"{what} runs {program!r}, which the image does not contain ({', '.join(sorted(self.binaries))})"
                continue
            flags = [a.split("=")[0] for a in argv[1:] if a.startswith("--")]
            yield from (f"{what}: {program} has no flag {f}" for f in flags if f[2:] not in self.flags.get(program, ()))
            yield from (f"{what}: no Spool program reads {n}" for n in env if n.startswith("SPOOL_") and n not in self.env_names)

    def check_broker(self) -> Iterator[str]:
        """kubernetes: the Service selects the broker's pods alone, on its port; the probes ask its routes there"""
        if len(found := self.running("spool-broker")) != 1:
            yield f"expected one container running spool-broker in deploy/kubernetes/, found {len(found)}"
            return
        broker, _, container, _ = found[0]
        port = int(env_value(container, "SPOOL_PORT") or self.defaults["SPOOL_PORT"])
        named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
        yield from [] if port in named.values() else [f"the broker declares no containerPort {port} (its SPOOL_PORT)"]
        pods = {name_of(o): o["spec"]["template"]["metadata"].get("labels") or {} for o in self.kind("Deployment")}
        for service in self.kind("Service") or [{"kind": "Service", "spec": {"ports": []}}]:
            selector = service["spec"].get("selector") or {}
            selected = [n for n, labels in pods.items() if selector and selector.items() <= labels.items()]
            if selected != [name_of(broker)]:
                yield f"{name_of(service)} selects the pods of {selected or 'no Deployment'}, not {name_of(broker)}'s alone"
            for target in (p.get("targetPort", p["port"]) for p in service["spec"]["ports"]):
                if named.get(target, target) != port:
                    yield f"{name_of(service)} targets port {target!r} of the broker, which listens on {port}"
        for probe, wanted in (("startupProbe", None), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (container.get(probe) or {}).get("httpGet")
            path, probed = (get.get("path"), named.get(get["port"], get["port"])) if get else (None, None)
            if (get or wanted) and (path not in self.routes or wanted not in (None, path) or probed != port):
                expected = wanted or f"one of {sorted(self.routes)}"
                yield f"the broker's {probe} asks {path} on port {probed}, not {expected} on {port}"
        if (timeout := (container.get("readinessProbe") or {}).get("timeoutSeconds", 1)) <= DATABASE_TIMEOUT_SECONDS:
            yield f"readinessProbe.timeoutSeconds is {timeout}, but /readyz gives the database {DATABASE_TIMEOUT_SECONDS} s"

    def check_references(self) -> Iterator[str]:
        """kubernetes: references to Secrets (and their keys), ConfigMaps, TriggerAuthentications, Deployments resolve"""
        defined = {(o["metadata"].get("namespace"), o["kind"], o["metadata"]["name"]):
                   {*(o.get("data") or {}), *(o.get("stringData") or {})} for _, o in self.objects}
        for _, obj in self.objects:
            for where, kind, name, key, optional in references(obj.get("spec") or {}, "spec"):
                keys = defined.get((obj["metadata"].get("namespace"), kind, name))
                if not optional and (keys is None or key is not None and key not in keys):
                    yield f"{name_of(obj)} {where}: no {kind} {name}{f' with key {key!r}' if key else ''} in its namespace"

    def check_keys(self) -> Iterator[str]:
        """kubernetes: the broker's SPOOL_API_KEYS holds the key each worker and KEDA sends (same Secret and key)"""
        found = self.running("spool-broker")
        env = found[0][2].get("env") or [] if len(found) == 1 else []
        names = [e["name"] for e in env]
        if "SPOOL_API_KEYS" not in names:
            yield "the broker has no SPOOL_API_KEYS: a broker listening beyond loopback refuses to start without a key"
            return
        position = names.index("SPOOL_API_KEYS")
        accepted = set()  # (Secret, key) pairs the broker's SPOOL_API_KEYS expands to
        for variable in re.findall(r"\$\((\w+)\)", env[position].get("value") or ""):
            if variable not in names[:position]:  # Kubernetes leaves $(X) unexpanded unless X comes first
                yield f"SPOOL_API_KEYS uses $({variable}), which is not defined before it"
            elif ref := (env[names.index(variable)].get("valueFrom") or {}).get("secretKeyRef"):
                accepted.add((ref["name"], ref["key"]))
        if ref := (env[position].get("valueFrom") or {}).get("secretKeyRef"):
            accepted.add((ref["name"], ref["key"]))
        sent = [(f"{name_of(o)}'s SPOOL_API_KEY", e["valueFrom"]["secretKeyRef"]) for o, _, c, _ in self.running("spool-worker")
                for e in c.get("env") or [] if e["name"] == "SPOOL_API_KEY" and "secretKeyRef" in (e.get("valueFrom") or {})]
        sent += [(f"{name_of(a)}'s {r['parameter']}", r) for a in self.kind("TriggerAuthentication")
                 for r in a["spec"].get("secretTargetRef") or []]
        for what, ref in sent:
            if (ref["name"], ref["key"]) not in accepted:
                yield f"{what} ({ref['name']}/{ref['key']}) is not among the broker's SPOOL_API_KEYS"

    def check_workers(self) -> Iterator[str]:
        """kubernetes: workers reach the broker Service and a sidecar; KEDA scales them on broker metrics for their model"""
        for obj, pod, c, argv in self.running("spool-worker"):
            for url in (env_value(c, "SPOOL_BROKER_URL") or "").split(","):
                yield from self.reaches_service(url.strip(), f"{name_of(obj)} SPOOL_BROKER_URL")
            if "--forward" in argv[:-1]:
                target = urlsplit(argv[argv.index("--forward") + 1])
                others = [o for o in (pod.get("initContainers") or []) + pod["containers"] if o is not c]
                if target.hostname not in ("127.0.0.1", "localhost", "::1") or target.port not in {
                        p["containerPort"] for o in others for p in o.get("ports") or []}:
                    yield f"{name_of(obj)} --forward {target.geturl()}: no other container of the pod has that port"
        workers = {o["metadata"]["name"]: c for o, _, c, _ in self.running("spool-worker")}
        for scaled in self.kind("ScaledObject"):
            if (target := scaled["spec"]["scaleTargetRef"]["name"]) not in workers:
                yield f"{name_of(scaled)} scales {target}, not a Deployment running spool-worker ({', '.join(workers)})"
                continue
            models = [m.strip() for m in (env_value(workers[target], "SPOOL_MODELS") or "").split(",") if m.strip()]
            for trigger in scaled["spec"]["triggers"]:
                meta = trigger.get("metadata") or {}
                if trigger["type"] == "metrics-api":
                    yield from self.reaches_service(meta.get("url", ""), f"{name_of(scaled)} metrics-api url")
                    url = urlsplit(meta.get("url", ""))
                    if url.path != "/v1/queue/metrics" or parse_qs(url.query).get("model") != models:
                        yield f"the metrics-api url asks {url.path}?{url.query}, not /v1/queue/metrics?model={','.join(models)}"
                    if meta.get("valueLocation") not in self.queue_fields:
                        yield f"valueLocation {meta.get('valueLocation')!r} is none of {self.queue_fields} (QueueAPI.swift)"
                    if meta.get("authMode") != "bearer" or "authenticationRef" not in trigger:
                        yield "the metrics-api trigger must send the broker a key: authMode bearer and an authenticationRef"
                for name in set(re.findall(r"\bspool_\w+", meta.get("query", ""))) if trigger["type"] == "prometheus" else []:
                    if not any(re.fullmatch(pattern, name) for pattern in self.metrics):
                        yield f"the prometheus query names {name}, which the broker does not export (BrokerMetrics.swift)"

    def check_nginx(self) -> Iterator[str]:
        """nginx.conf: unbuffered, reads outlast the long-poll, body limits per --max-body-bytes/--max-file-bytes"""
        body_limit, file_limit = self.defaults["SPOOL_MAX_BODY_BYTES"], self.defaults["SPOOL_MAX_FILE_BYTES"]
        upload_limit = file_limit + MULTIPART_ALLOWANCE
        upstreams = {u[1][0] for u in find(self.nginx, "upstream", deep=True)}
        servers = [(self.nginx, http, server) for http in find(self.nginx, "http") for server in find(http, "server")]
        problems = [] if servers else ["deploy/nginx.conf has no server block in an http block"]
        for chain, path in ((chain, path) for chain in servers for path in UPLOAD_PATHS + OTHER_PATHS):
            if (location := location_for(chain[-1], path)) is None:
                problems.append(f"no location handles {path}")
                continue
            where, upload = f"location {' '.join(location[1])}", path in UPLOAD_PATHS
            get = {name: args[0] for block in (*chain, location) for name, args, _ in block[2] if args}.get  # inner wins
            if urlsplit(get("proxy_pass", "")).hostname not in upstreams:
                problems.append(f"{where}: proxy_pass {get('proxy_pass') or '(none)'} is not to an upstream of the brokers")
            if get("proxy_buffering", "on") != "off":
                problems.append(f"{where}: proxy_buffering off is missing: status streams would be buffered")
            if nginx_value(timeout := get("proxy_read_timeout", "60s"), TIMES) < 2 * LONG_POLL_SECONDS:
                problems.append(f"{where}: proxy_read_timeout {timeout} < {2 * LONG_POLL_SECONDS} s, twice the long-poll")
            size = nginx_value(get("client_max_body_size", "1m"), SIZES)
            if upload and 0 < size < upload_limit:
                problems.append(f"{where} (uploads): client_max_body_size {size} < {upload_limit} (--max-file-bytes + 64 KiB)")
            if upload and get("proxy_request_buffering", "on") != "off":
                problems.append(f"{where} (uploads): proxy_request_buffering off is missing: uploads would go to disk first")
            if not upload and not body_limit <= size < file_limit:
                problems.append(f"{where} (other routes): client_max_body_size {size or 'unlimited'}, not within"
                                f" --max-body-bytes {body_limit} .. --max-file-bytes {file_limit}")
        yield from dict.fromkeys(problems)  # once per location, not per path


def run(title: str, check: Any) -> bool:
    try:
        problems = list(check() or [])
    except (Failed, OSError, yaml.YAMLError) as failure:
        problems = [str(failure)]
    except Exception as error:  # a check that crashed is a failure too, with its cause
        problems = [f"the check could not run: {type(error).__name__}: {error}"]
    print(("FAIL  " if problems else "ok    ") + title)
    for line in "\n".join(problems).splitlines():
        print(f"        {line}")
    return not problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the repository to check")
    root = parser.parse_args().root.resolve()
    print(f"Checking {root} (kubernetes-validate {importlib.metadata.version('kubernetes-validate')},"
          f" jsonschema {importlib.metadata.version('jsonschema')}, PyYAML {yaml.__version__})")
    loaded: list[Deploy] = []
    results = [run("the files load (YAML without duplicate keys, Dockerfile, nginx.conf, Swift sources)",
                   lambda: loaded.append(Deploy(root)))]
    for d in loaded:
        for path, obj in d.objects:
            title = f"kubernetes {KUBERNETES_VERSION[:4]} schema (strict)"
            if str(obj.get("apiVersion")).startswith("keda.sh/"):
                title = "KEDA schema (deploy/schemas/keda.schema.json)"
            results.append(run(f"{title}: {path} {name_of(obj)}", lambda o=obj: d.schema(o)))
        results += [run(check.__doc__, lambda c=check: c(d)) for name, check in vars(Deploy).items() if name.startswith("check_")]
    print()
    if not all(results):
        print(f"{results.count(False)} of {len(results)} checks failed." + ("" if loaded else " (The rest need the files.)"))
        return 1
    print(f"All {len(results)} checks passed. (Static only: no image was built and nothing was run.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
