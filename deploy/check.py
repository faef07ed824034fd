#!/usr/bin/env python3
"""Static checks of Spool's deployment files: everything under deploy/ and docker-compose.yml.

    python -m pip install -r deploy/requirements.txt
    python deploy/check.py            # exit 0 when every check passes, 1 otherwise

Nothing is built, pulled or run: the files are parsed, validated against schemas (Kubernetes'
OpenAPI schemas from kubernetes-validate, deploy/schemas/keda.schema.json for KEDA, the Compose
specification's schema vendored by check-jsonschema) and cross-checked with each other and with
the repository (Package.swift, the paths the Dockerfile copies, the broker's metrics answer).
Prints one line per check: "ok" or "FAIL" with the reasons under it.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import importlib.metadata
import importlib.resources
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as error:  # pragma: no cover - the message is the point
    print(f"FAIL  imports: {error}")
    print("      install the checker's packages first: python -m pip install -r deploy/requirements.txt")
    sys.exit(2)

# The Kubernetes version whose schemas (bundled with kubernetes-validate) the manifests must meet.
KUBERNETES_VERSION = "1.34.0"
KEDA_API_VERSION = "keda.sh/v1alpha1"
# The broker's defaults that the files rely on (README.md, docs/).
BROKER_DEFAULT_PORT = 8080
BROKER_DATABASE_TIMEOUT_SECONDS = 2  # /readyz gives the database this long to answer
LONG_POLL_SECONDS = 30
BROKER_MAX_BODY_BYTES = 10 * 1024 * 1024  # --max-body-bytes: ordinary (JSON) requests
BROKER_MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024  # --max-file-bytes: the upload routes below
# A multipart POST /v1/files carries its form fields and part headers besides the file: the broker
# takes a body this much above BROKER_MAX_FILE_BYTES (Sources/SpoolBroker/FileRoutes.swift).
BROKER_MULTIPART_ALLOWANCE = 64 * 1024
# Request paths (as a load balancer in front of the broker sees them, without the query) of the
# broker's upload routes, which take bodies up to BROKER_MAX_FILE_BYTES and store them as they
# arrive, and of ordinary routes, which take up to BROKER_MAX_BODY_BYTES.
UPLOAD_PATHS = {
    "POST /v1/files": "/v1/files",
    "PUT /v1/files/{id}/upload": "/v1/files/file-3b1f0c9e-5d2a-4c1e-9f7a-2b8d6e4a1c07/upload",
    "POST /v1/worker/jobs/{request_id}/files": "/v1/worker/jobs/0f8e2c4a-7b1d-4e3f-a5c6-9d8b7a6f5e4d/files",
}
ORDINARY_PATHS = {
    "POST /v1/queue/submit": "/v1/queue/submit",
    "POST /fal/{owner}/{app}": "/fal/acme/video-gen",
    "GET /fal/…/status/stream": "/fal/acme/video-gen/requests/0f8e2c4a-7b1d-4e3f-a5c6-9d8b7a6f5e4d/status/stream",
    "POST /v1/worker/jobs/{request_id}/complete": "/v1/worker/jobs/0f8e2c4a-7b1d-4e3f-a5c6-9d8b7a6f5e4d/complete",
    "GET /v1/files/{id}/content": "/v1/files/file-3b1f0c9e-5d2a-4c1e-9f7a-2b8d6e4a1c07/content",
    "POST /v1/files/{id}/preprocess": "/v1/files/file-3b1f0c9e-5d2a-4c1e-9f7a-2b8d6e4a1c07/preprocess",
    "POST /v1/batches": "/v1/batches",
}


class CheckFailed(Exception):
    """A check's failure: its message lists every reason, one per line."""


class CheckSkipped(CheckFailed):
    """A check that cannot run because a file it reads failed an earlier check (which counts)."""


def fail_if(problems: list[str]) -> None:
    if problems:
        raise CheckFailed("\n".join(problems))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error, not a silent
    overwrite (two `env:` lists in one container is a classic)."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class Instruction:
    line: int
    keyword: str
    text: str  # the arguments, continuation lines joined


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Copy:
    line: int
    flags: dict[str, str]
    sources: list[str]
    destination: str


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages of a Dockerfile (no heredocs)."""
    instructions: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue  # comments, also inside continuations, and blank lines
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        joined = " ".join(part for part in buffer if part)
        buffer = []
        keyword, _, rest = joined.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), rest.strip()))
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.text.partition("=")
            arguments[name.strip()] = default.strip().strip('"')
        elif instruction.keyword == "FROM":
            words = [w for w in instruction.text.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: arguments.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].instructions.append(instruction)
    return arguments, stages


def parse_copy(instruction: Instruction) -> Copy:
    text = instruction.text
    flags: dict[str, str] = {}
    words = shlex.split(text) if not text.lstrip().startswith("[") else []
    if text.lstrip().startswith("["):
        paths = json.loads(text)
    else:
        while words and words[0].startswith("--"):
            flag, _, value = words.pop(0)[2:].partition("=")
            flags[flag] = value
        rest = " ".join(words)
        paths = json.loads(rest) if rest.startswith("[") else words
    return Copy(instruction.line, flags, paths[:-1], paths[-1])


def exec_form(text: str) -> list[str] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def parse_env(text: str) -> dict[str, str]:
    words = shlex.split(text)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}  # legacy `ENV KEY value`
    return dict(word.split("=", 1) for word in words)


@dataclass
class Directive:
    name: str
    args: list[str]
    line: int
    children: list["Directive"] = field(default_factory=list)

    def find(self, name: str) -> list["Directive"]:
        found = []
        for child in self.children:
            if child.name == name:
                found.append(child)
            found.extend(child.find(name))
        return found


def parse_nginx(text: str) -> Directive:
    """nginx's configuration syntax: directives end with ';', blocks are braced."""
    token_re = re.compile(r"""\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([{};])|([^\s{};"'#][^\s{};]*)""")
    root = Directive("main", [], 0)
    stack = [root]
    words: list[str] = []
    word_line = 1
    position = 0
    while position < len(text):
        match = token_re.match(text, position)
        if not match:
            raise ValueError(f"line {text.count(chr(10), 0, position) + 1}: cannot read {text[position:position + 20]!r}")
        position = match.end()
        line = text.count("\n", 0, match.start()) + 1
        double, single, punctuation, bare = match.groups()
        if punctuation is None and double is None and single is None and bare is None:
            continue
        if punctuation == ";":
            if not words:
                raise ValueError(f"line {line}: a ';' with no directive")
            stack[-1].children.append(Directive(words[0], words[1:], word_line))
            words = []
        elif punctuation == "{":
            if not words:
                raise ValueError(f"line {line}: a block with no directive")
            block = Directive(words[0], words[1:], word_line)
            stack[-1].children.append(block)
            stack.append(block)
            words = []
        elif punctuation == "}":
            if words or len(stack) == 1:
                raise ValueError(f"line {line}: unexpected '}}'")
            stack.pop()
        else:
            if not words:
                word_line = line
            words.append(double if double is not None else single if single is not None else bare)
    if words or len(stack) != 1:
        raise ValueError("unexpected end of file: a directive is unterminated or a block is unclosed")
    return root


def nginx_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    if not match:
        raise ValueError(f"not an nginx time: {value!r}")
    factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * factor


def nginx_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG])?", value)
    if not match:
        raise ValueError(f"not an nginx size: {value!r}")
    return int(match.group(1)) * {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3}[(match.group(2) or "").lower() or None]


def nginx_own(block: Directive, name: str) -> list[Directive]:
    """The directives `name` given in `block` itself, not in the blocks inside it."""
    return [child for child in block.children if child.name == name]


@dataclass
class NginxRoute:
    """The blocks a request passes through, from the outermost to the location that handles it."""

    blocks: list[Directive]

    def effective(self, name: str) -> list[Directive]:
        """The directives `name` in force: those of the innermost block that gives any. nginx
        inherits from the enclosing block only where a block gives none (proxy_set_header too)."""
        for block in reversed(self.blocks):
            found = nginx_own(block, name)
            if found:
                return found
        return []

    def value(self, name: str, default: str) -> str:
        found = self.effective(name)
        return " ".join(found[-1].args) if found else default

    @property
    def location(self) -> Directive:
        return self.blocks[-1]

    def where(self) -> str:
        return f"location {' '.join(self.location.args)} (line {self.location.line})"


def nginx_location_pattern(location: Directive) -> tuple[str, str]:
    """A location's modifier ("", "=", "^~", "~", "~*" or "@") and its pattern."""
    args = location.args
    if len(args) == 2:
        return args[0], args[1]
    if len(args) == 1:
        for modifier in ("^~", "~*", "~", "=", "@"):
            if args[0].startswith(modifier):
                rest = args[0][len(modifier):]
                return (modifier, rest) if modifier != "@" else ("@", args[0])
        return "", args[0]
    raise ValueError(f"line {location.line}: location with arguments {args}")


def nginx_route(server: list[Directive], path: str) -> NginxRoute | None:
    """The location of the server block (the last of `server`, with its enclosing blocks) that
    handles a request for `path`, chosen as nginx does: an exact match (`=`); else the longest
    matching prefix if it is `^~`; else the first regex location (`~`, `~*`, in their order) whose
    regex matches; else the longest matching prefix. The regexes run in Python's re, which reads
    the PCRE syntax location patterns use the same way (a named group `(?<name>` is translated)."""
    locations = nginx_own(server[-1], "location")
    for location in locations:
        if location.find("location"):
            raise ValueError(f"line {location.line}: nested locations, which this reader does not follow")
    longest: tuple[int, Directive, str] | None = None
    regexes: list[tuple[Directive, str, str]] = []
    for location in locations:
        modifier, pattern = nginx_location_pattern(location)
        if modifier == "=" and path == pattern:
            return NginxRoute(server + [location])
        if modifier in ("", "^~") and path.startswith(pattern) and (longest is None or len(pattern) > longest[0]):
            longest = (len(pattern), location, modifier)
        if modifier in ("~", "~*"):
            regexes.append((location, modifier, pattern))
    if longest and longest[2] == "^~":
        return NginxRoute(server + [longest[1]])
    for location, modifier, pattern in regexes:
        try:
            regex = re.compile(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern), re.IGNORECASE if modifier == "~*" else 0)
        except re.error as error:
            raise ValueError(f"line {location.line}: location {modifier} {pattern}: not a regex Python's re reads ({error})")
        if regex.search(path):
            return NginxRoute(server + [location])
    return NginxRoute(server + [longest[1]]) if longest else None


def compose_seconds(value: Any) -> float:
    """A Compose duration: 1m30s, 45s, 300ms, or a number of seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        raise ValueError(f"not a duration: {value!r}")
    return sum(float(n) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether the build context leaves `path` out, by Docker's rules: patterns in order, the last
    match wins, '!' re-includes, '**' spans directories, and a matched directory takes its contents."""

    def to_regex(pattern: str) -> re.Pattern[str]:
        out = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                out += "(?:.*/)?"
                index += 3
            elif pattern.startswith("**", index):
                out += ".*"
                index += 2
            elif pattern[index] == "*":
                out += "[^/]*"
                index += 1
            elif pattern[index] == "?":
                out += "[^/]"
                index += 1
            else:
                out += re.escape(pattern[index])
                index += 1
        return re.compile(out + r"\Z")

    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = os.path.normpath(raw[1:] if negated else raw).lstrip("/")
        regex = to_regex(pattern)
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


# ---------------------------------------------------------------------------------------------
# The repository
# ---------------------------------------------------------------------------------------------


class Repository:
    def __init__(self, root: Path):
        self.root = root
        self.deploy = root / "deploy"
        self.yaml_files = sorted(
            [p for p in self.deploy.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
            + [root / "docker-compose.yml"]
        )
        self.documents: dict[Path, list[Any]] = {}
        self.yaml_errors: dict[Path, str] = {}

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def load_yaml(self, path: Path) -> list[Any]:
        if path in self.documents:
            return self.documents[path]
        if path in self.yaml_errors:
            raise CheckSkipped(f"{self.rel(path)} did not parse (see its yaml check above)")
        try:
            with path.open() as stream:  # a stream, so error marks name the file
                documents = [d for d in yaml.load_all(stream, Loader=StrictLoader) if d is not None]
        except FileNotFoundError:
            self.yaml_errors[path] = "missing"
            raise CheckFailed(f"{self.rel(path)} is missing")
        except yaml.YAMLError as error:
            self.yaml_errors[path] = str(error)
            raise CheckFailed(f"{self.rel(path)}: {error}")
        self.documents[path] = documents
        return documents

    # Kubernetes ------------------------------------------------------------------------------

    def kubernetes_objects(self) -> list[tuple[Path, dict]]:
        objects = []
        for path in sorted((self.deploy / "kubernetes").glob("*.y*ml")):
            for document in self.load_yaml(path):
                if not isinstance(document, dict):
                    raise CheckFailed(f"{self.rel(path)}: a document is not a mapping")
                objects.append((path, document))
        if not objects:
            raise CheckFailed("no manifests under deploy/kubernetes/")
        return objects

    def objects_of_kind(self, kind: str) -> list[dict]:
        return [o for _, o in self.kubernetes_objects() if o.get("kind") == kind]

    def one(self, kind: str, predicate: Callable[[dict], bool] = lambda _: True, what: str = "") -> dict:
        found = [o for o in self.objects_of_kind(kind) if predicate(o)]
        if len(found) != 1:
            raise CheckFailed(f"expected one {kind}{' ' + what if what else ''} in deploy/kubernetes/, found {len(found)}")
        return found[0]

    def deployment(self, component: str) -> dict:
        return self.one(
            "Deployment",
            lambda o: o["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component,
            f"of component {component}",
        )

    def secret_keys(self) -> dict[str, set[str]]:
        keys: dict[str, set[str]] = {}
        path = self.deploy / "kubernetes" / "secret.yaml"
        for document in self.load_yaml(path):
            if isinstance(document, dict) and document.get("kind") == "Secret":
                name = document["metadata"]["name"]
                keys[name] = set(document.get("data") or {}) | set(document.get("stringData") or {})
        if not keys:
            raise CheckFailed("deploy/kubernetes/secret.yaml holds no Secret")
        return keys

    # The image -------------------------------------------------------------------------------

    def dockerfile(self) -> tuple[dict[str, str], list[Stage]]:
        path = self.deploy / "Dockerfile"
        if not path.is_file():
            raise CheckFailed("deploy/Dockerfile is missing")
        arguments, stages = parse_dockerfile(path.read_text())
        if len(stages) < 2:
            raise CheckFailed(f"deploy/Dockerfile has {len(stages)} stage(s); expected a build stage and a runtime stage")
        return arguments, stages

    def built_products(self) -> list[str]:
        _, stages = self.dockerfile()
        products: list[str] = []
        for stage in stages[:-1]:
            for run in stage.all("RUN"):
                products += re.findall(r"--product[ =]([A-Za-z0-9_.-]+)", run.text)
        if not products:
            raise CheckFailed("deploy/Dockerfile builds no --product")
        return products

    def image_binaries(self) -> set[str]:
        """Basenames the runtime stage copies from the build stage."""
        _, stages = self.dockerfile()
        names = set()
        for instruction in stages[-1].all("COPY"):
            copy = parse_copy(instruction)
            if "from" in copy.flags:
                names |= {Path(source).name for source in copy.sources}
        return names

    def runtime_copies(self) -> list[Copy]:
        _, stages = self.dockerfile()
        return [parse_copy(i) for i in stages[-1].all("COPY")]

    def image_workdir(self) -> str:
        _, stages = self.dockerfile()
        workdirs = stages[-1].all("WORKDIR")
        return workdirs[-1].text if workdirs else "/"

    def dockerignore(self) -> list[str]:
        path = self.deploy / "Dockerfile.dockerignore"
        if not path.is_file():
            return []
        return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]

    def package_executables(self) -> tuple[set[str], set[str]]:
        text = (self.root / "Package.swift").read_text()
        text = re.sub(r"//[^\n]*", "", text)
        products = set(re.findall(r"\.executable\(\s*name:\s*\"([^\"]+)\"", text))
        targets = set(re.findall(r"\.executableTarget\(\s*name:\s*\"([^\"]+)\"", text))
        return products, targets

    # Compose ---------------------------------------------------------------------------------

    def compose(self) -> dict:
        documents = self.load_yaml(self.root / "docker-compose.yml")
        if len(documents) != 1 or not isinstance(documents[0], dict):
            raise CheckFailed("docker-compose.yml must be one YAML mapping")
        return documents[0]

    def compose_services(self) -> dict[str, dict]:
        services = self.compose().get("services")
        if not isinstance(services, dict) or not services:
            raise CheckFailed("docker-compose.yml has no services")
        return services

    def compose_command(self, service: dict) -> list[str]:
        command = service.get("command")
        if command is not None:
            return shlex.split(command) if isinstance(command, str) else list(command)
        if service.get("image") not in self.compose_spool_images():
            return []
        cmd = self.dockerfile()[1][-1].all("CMD")  # the image's default command
        if not cmd:
            return []
        return exec_form(cmd[-1].text) or shlex.split(cmd[-1].text)

    def compose_spool_images(self) -> set[Any]:
        """The image names of the services built from deploy/Dockerfile."""
        images = set()
        for service in (self.compose().get("services") or {}).values():
            build = service.get("build")
            if isinstance(build, str):
                build = {"context": build}
            if isinstance(build, dict):
                dockerfile = (self.root / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve()
                if dockerfile == (self.deploy / "Dockerfile").resolve():
                    images.add(service.get("image"))
        return images

    def compose_services_running(self, program: str) -> dict[str, dict]:
        return {n: s for n, s in self.compose_services().items() if self.compose_command(s)[:1] == [program]}

    def nginx(self) -> Directive:
        path = self.deploy / "nginx.conf"
        if not path.is_file():
            raise CheckFailed("deploy/nginx.conf is missing")
        try:
            return parse_nginx(path.read_text())
        except ValueError as error:
            raise CheckFailed(f"deploy/nginx.conf: {error}")

    def nginx_servers(self) -> list[list[Directive]]:
        """Each server block of nginx.conf's http block, with the blocks around it."""
        root = self.nginx()
        servers = [[root, http, server] for http in nginx_own(root, "http") for server in nginx_own(http, "server")]
        if not servers:
            raise CheckFailed("deploy/nginx.conf has no server block inside an http block")
        return servers

    def nginx_routes(self, paths: dict[str, str]) -> tuple[list[tuple[str, NginxRoute]], list[str]]:
        """The location each server block handles each of `paths` ({label: path}) in, as
        (label, route), and a problem for each path a server block has no location for."""
        routes, problems = [], []
        for server in self.nginx_servers():
            for label, path in paths.items():
                try:
                    route = nginx_route(server, path)
                except ValueError as error:
                    raise CheckFailed(f"deploy/nginx.conf: {error}")
                if route is None:
                    problems.append(f"{label} ({path}): no location of the server block at line {server[-1].line} matches it")
                else:
                    routes.append((label, route))
        return routes, problems


def nginx_all(block: Directive) -> list[Directive]:
    """Every directive inside `block`, at any depth."""
    return [d for child in block.children for d in (child, *nginx_all(child))]


def group_routes(routes: list[tuple[str, NginxRoute]]) -> list[tuple[NginxRoute, list[str]]]:
    """The locations of `routes` in order, each once, with the labels of the paths it handles."""
    groups: dict[int, tuple[NginxRoute, list[str]]] = {}
    for label, route in routes:
        groups.setdefault(id(route.location), (route, []))[1].append(label)
    return list(groups.values())


def show_directives(directives: list[Directive]) -> str:
    return "; ".join(" ".join(a if a and not re.search(r"\s", a) else f'"{a}"' for a in d.args) for d in directives) or "unset"


def compose_environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def pod_containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers") or []) + list(pod.get("containers") or [])


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


def literal_env(container: dict, name: str) -> str | None:
    entry = env_of(container).get(name)
    return None if entry is None else entry.get("value")


def same_number(a: Any, b: Any) -> bool:
    try:
        return float(str(a)) == float(str(b))
    except ValueError:
        return False


def show_labels(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "nothing"


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def service_url_problems(url: str, service: dict, what: str) -> list[str]:
    """Whether an in-cluster URL reaches `service` (by its name, in its namespace, on its port)."""
    parts = urlsplit(url)
    name = service["metadata"]["name"]
    namespace = service["metadata"].get("namespace", "default")
    hosts = {f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}"}
    problems = []
    if parts.hostname not in hosts:
        problems.append(f"{what} {url} does not name the Service {name} in namespace {namespace} (use {name}.{namespace}.svc.cluster.local)")
    ports = [p["port"] for p in service["spec"]["ports"]]
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    if port not in ports:
        problems.append(f"{what} {url} uses port {port}, but the Service {name} listens on {ports}")
    return problems


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


class Checker:
    def __init__(self, repository: Repository):
        self.repo = repository
        self.failures = 0
        self.passes = 0
        self.skipped = 0

    def run(self, title: str, check: Callable[[], str | None]) -> None:
        try:
            detail = check()
        except CheckSkipped as skipped:
            self.skipped += 1
            print(f"skip  {title}: {skipped}")
            return
        except CheckFailed as failure:
            self.failures += 1
            print(f"FAIL  {title}")
            for line in str(failure).splitlines():
                print(f"        {line}")
            return
        except Exception as error:  # a check that crashed is a failure too, with its cause
            self.failures += 1
            print(f"FAIL  {title}")
            print(f"        the check could not run: {type(error).__name__}: {error}")
            return
        self.passes += 1
        print(f"ok    {title}" + (f": {detail}" if detail else ""))

    # -- YAML ----------------------------------------------------------------------------------

    def yaml_checks(self) -> None:
        for path in self.repo.yaml_files:
            def parse(path: Path = path) -> str:
                documents = self.repo.load_yaml(path)
                return f"{len(documents)} document{'s' if len(documents) != 1 else ''}"
            self.run(f"yaml parses (no duplicate keys): {self.repo.rel(path)}", parse)

    # -- Kubernetes schemas --------------------------------------------------------------------

    def kubernetes_schema_checks(self) -> None:
        try:
            objects = self.repo.kubernetes_objects()
        except CheckFailed as failure:
            def unloadable(failure: CheckFailed = failure) -> None:
                raise failure
            self.run("kubernetes manifests load", unloadable)
            return
        keda_schema = json.loads((self.repo.deploy / "schemas" / "keda.schema.json").read_text())
        for path, obj in objects:
            where = f"{self.repo.rel(path)} {name_of(obj)}"
            if str(obj.get("apiVersion", "")).startswith("keda.sh/"):
                self.run(f"KEDA schema (deploy/schemas/keda.schema.json): {where}", lambda obj=obj: self.validate_keda(obj, keda_schema))
            else:
                self.run(
                    f"kubernetes {KUBERNETES_VERSION.rsplit('.', 1)[0]} schema (strict): {where}",
                    lambda obj=obj: self.validate_kubernetes(obj),
                )

    @staticmethod
    def validate_kubernetes(obj: dict) -> str | None:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path) or "(top)"
            raise CheckFailed(f"{path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            raise CheckFailed(error.message)
        return None

    @staticmethod
    def validate_keda(obj: dict, schema: dict) -> str | None:
        kind = obj.get("kind")
        if obj.get("apiVersion") != KEDA_API_VERSION:
            raise CheckFailed(f"apiVersion is {obj.get('apiVersion')!r}; KEDA's resources are {KEDA_API_VERSION}")
        if kind not in schema["$defs"]:
            raise CheckFailed(f"kind {kind!r} is not one the schema knows (ScaledObject, TriggerAuthentication, ClusterTriggerAuthentication)")
        one_kind = {k: v for k, v in schema.items() if k != "oneOf"} | {"$ref": f"#/$defs/{kind}"}
        validator_class = jsonschema.validators.validator_for(one_kind)
        validator_class.check_schema(one_kind)
        fail_if(schema_problems(validator_class(one_kind), obj))
        if kind == "ScaledObject":
            spec = obj["spec"]
            low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
            if low > high:
                raise CheckFailed(f"spec.minReplicaCount ({low}) is above spec.maxReplicaCount ({high})")
            if "idleReplicaCount" in spec and spec["idleReplicaCount"] >= low:
                raise CheckFailed("spec.idleReplicaCount must be below spec.minReplicaCount")
        return None

    # -- Compose schema ------------------------------------------------------------------------

    def compose_schema_check(self) -> None:
        def check() -> str:
            compose = self.repo.compose()
            resource = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
            schema = json.loads(resource.read_text())
            validator_class = jsonschema.validators.validator_for(schema)
            fail_if(schema_problems(validator_class(schema), compose))
            version = importlib.metadata.version("check-jsonschema")
            return f"compose-spec.json vendored by check-jsonschema {version}"

        self.run("docker-compose.yml against the Compose specification schema", check)

    # -- The Dockerfile ------------------------------------------------------------------------

    def dockerfile_checks(self) -> None:
        repo = self.repo

        def stages() -> str:
            _, stages = repo.dockerfile()
            build, runtime = stages[0], stages[-1]
            problems = []
            swift = re.fullmatch(r"(?:docker\.io/)?(?:library/)?swift:6\.3\.1-(\w+)(?:-slim)?", build.base)
            if not swift:
                problems.append(f"the build stage is FROM {build.base}; expected swift:6.3.1-<distribution>")
            allowed = {"ubuntu:noble": "noble", "ubuntu:24.04": "noble", "debian:bookworm-slim": "bookworm"}
            runtime_distribution = allowed.get(runtime.base.removeprefix("docker.io/").removeprefix("library/"))
            if runtime_distribution is None:
                problems.append(f"the runtime stage is FROM {runtime.base}; expected ubuntu:noble or debian:bookworm-slim")
            elif swift and swift.group(1) != runtime_distribution:
                problems.append(
                    f"the build stage ({build.base}) and the runtime stage ({runtime.base}) are different distributions:"
                    " the binaries need the glibc they were linked against"
                )
            fail_if(problems)
            return f"{build.base} -> {runtime.base}"

        def dependency_layer() -> str:
            _, stages = repo.dockerfile()
            build = stages[0]
            first_copy = next((i for i in build.instructions if i.keyword == "COPY"), None)
            if first_copy is None:
                raise CheckFailed("the build stage copies nothing")
            sources = parse_copy(first_copy).sources
            if not sources or any(not fnmatch.fnmatch("Package.swift", s) and not s.startswith("Package.") for s in sources):
                raise CheckFailed(f"line {first_copy.line}: the first COPY copies {sources}; expected only Package.swift and Package.resolved")
            resolve = next((i for i in build.instructions if i.keyword == "RUN" and "swift package resolve" in i.text), None)
            second_copy = next((i for i in build.instructions if i.keyword == "COPY" and i is not first_copy), None)
            if resolve is None:
                raise CheckFailed("no RUN swift package resolve in the build stage")
            if not (first_copy.line < resolve.line and (second_copy is None or resolve.line < second_copy.line)):
                raise CheckFailed("swift package resolve must run after the Package.* COPY and before the sources are copied")
            return f"COPY {' '.join(sources)} (line {first_copy.line}), then swift package resolve (line {resolve.line})"

        def products() -> str:
            built = repo.built_products()
            declared, executable_targets = repo.package_executables()
            missing = [p for p in built if p not in declared and p not in executable_targets]
            problems = [f"--product {p} is not an executable product in Package.swift (declared: {', '.join(sorted(declared))})" for p in missing]
            for wanted in ("spool-broker", "spool-worker", "spool"):
                if wanted not in built:
                    problems.append(f"the image must hold {wanted}, but the Dockerfile does not build --product {wanted}")
            not_copied = [p for p in built if p not in repo.image_binaries()]
            problems += [f"{p} is built but the runtime stage does not copy it from the build stage" for p in not_copied]
            fail_if(problems)
            return ", ".join(built)

        def copies_exist() -> str:
            _, stages = repo.dockerfile()
            ignore = repo.dockerignore()
            problems, copied = [], []
            for stage in stages:
                for instruction in stage.all("COPY") + stage.all("ADD"):
                    copy = parse_copy(instruction)
                    if "from" in copy.flags:
                        continue
                    for source in copy.sources:
                        matches = glob.glob(str(repo.root / source))
                        if not matches and not glob.has_magic(source):
                            problems.append(f"line {copy.line}: COPY {source}: no such file or directory in the repository")
                        for match in matches:
                            relative = os.path.relpath(match, repo.root)
                            if dockerignore_excludes(ignore, relative):
                                problems.append(f"line {copy.line}: COPY {relative}: excluded by deploy/Dockerfile.dockerignore")
                        copied.append(source)
            fail_if(problems)
            return ", ".join(copied)

        def symlinks_closed() -> str:
            _, stages = repo.dockerfile()
            copied: list[Path] = []
            for instruction in stages[0].all("COPY"):
                copy = parse_copy(instruction)
                if "from" not in copy.flags:
                    for source in copy.sources:
                        copied += [Path(m) for m in glob.glob(str(repo.root / source))]
            problems, links = [], []
            for top in copied:
                for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
                    if not path.is_symlink():
                        continue
                    target = (path.parent / os.readlink(path)).resolve()
                    links.append(f"{repo.rel(path)} -> {os.path.relpath(target, repo.root)}")
                    inside = any(target == c.resolve() or c.resolve() in target.parents for c in copied)
                    if not target.exists():
                        problems.append(f"{repo.rel(path)} -> {os.readlink(path)} is a broken link")
                    elif not inside:
                        problems.append(f"{repo.rel(path)} -> {os.readlink(path)}: the build stage does not COPY {repo.rel(target)}")
            fail_if(problems)
            return ", ".join(links) if links else "no symlinks"

        def runtime() -> str:
            _, stages = repo.dockerfile()
            final = stages[-1]
            problems = []
            users = final.all("USER")
            user = users[-1].text.split(":")[0] if users else "root"
            if user in ("root", "0"):
                problems.append("the runtime stage runs as root: add USER <uid> (numeric, for runAsNonRoot)")
            elif not user.isdigit():
                problems.append(f"USER {user}: use a numeric uid so Kubernetes' runAsNonRoot can verify it")
            if final.all("ENTRYPOINT"):
                problems.append("the runtime stage has an ENTRYPOINT; the image is meant to be ENTRYPOINT-less")
            cmd = final.all("CMD")
            if not cmd or exec_form(cmd[-1].text) != ["spool-broker"]:
                problems.append('the runtime stage\'s CMD must be ["spool-broker"]')
            env: dict[str, str] = {}
            for instruction in final.all("ENV"):
                env.update(parse_env(instruction.text))
            if env.get("SPOOL_HOST") != "0.0.0.0":
                problems.append("ENV SPOOL_HOST=0.0.0.0 is missing: the broker would listen on loopback only")
            packages = " ".join(i.text for i in final.all("RUN"))
            for package in ("ca-certificates", "tzdata", "python3"):
                if not re.search(rf"\b{re.escape(package)}\b", packages):
                    problems.append(f"the runtime stage does not install {package}")
            if not any(c.destination.endswith("Examples/handler.py") and "from" not in c.flags for c in repo.runtime_copies()):
                problems.append("the runtime stage does not copy Examples/handler.py")
            fail_if(problems)
            return f"USER {users[-1].text}, CMD {cmd[-1].text}, SPOOL_HOST={env['SPOOL_HOST']}"

        self.run("Dockerfile: a Swift 6.3.1 build stage and a runtime stage of the same distribution", stages)
        self.run("Dockerfile: dependencies resolve in a layer before the sources are copied", dependency_layer)
        self.run("Dockerfile: every --product is an executable product in Package.swift, and the image copies it", products)
        self.run("Dockerfile: every COPY source exists and is not excluded by Dockerfile.dockerignore", copies_exist)
        self.run("Dockerfile: symlinks in the copied sources point inside what the build stage copies", symlinks_closed)
        self.run("Dockerfile: runtime stage runs as non-root, no ENTRYPOINT, CMD spool-broker, SPOOL_HOST=0.0.0.0", runtime)

    # -- Kubernetes cross-checks ---------------------------------------------------------------

    def kubernetes_checks(self) -> None:
        repo = self.repo

        def labels() -> str:
            problems = []
            required = ("app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of")
            count = 0
            for path, obj in repo.kubernetes_objects():
                targets = [("", obj.get("metadata", {}).get("labels") or {})]
                template = (obj.get("spec") or {}).get("template")
                if isinstance(template, dict):
                    targets.append((" pod template", (template.get("metadata") or {}).get("labels") or {}))
                for suffix, found in targets:
                    count += 1
                    missing = [label for label in required if label not in found]
                    if missing:
                        problems.append(f"{repo.rel(path)} {name_of(obj)}{suffix} lacks {', '.join(missing)}")
            fail_if(problems)
            return f"{count} objects and pod templates carry {', '.join(required)}"

        def namespace() -> str:
            namespaces = {o.get("metadata", {}).get("namespace") for _, o in repo.kubernetes_objects()}
            if len(namespaces) != 1 or None in namespaces:
                raise CheckFailed(f"every object should name the same namespace (the URLs in worker.yaml and keda.yaml depend on it); found {namespaces}")
            return namespaces.pop()

        def selectors() -> str:
            problems = []
            for obj in repo.objects_of_kind("Deployment"):
                selector = obj["spec"]["selector"].get("matchLabels") or {}
                pod_labels = obj["spec"]["template"]["metadata"].get("labels") or {}
                if not labels_match(selector, pod_labels):
                    problems.append(f"{name_of(obj)}: spec.selector.matchLabels ({show_labels(selector)}) does not match its pod template's labels ({show_labels(pod_labels)})")
            deployments = repo.objects_of_kind("Deployment")
            for pdb in repo.objects_of_kind("PodDisruptionBudget"):
                selector = pdb["spec"]["selector"].get("matchLabels") or {}
                chosen = [d for d in deployments if labels_match(selector, d["spec"]["template"]["metadata"].get("labels") or {})]
                if len(chosen) != 1:
                    problems.append(f"{name_of(pdb)} selects the pods of {len(chosen)} Deployments; expected one")
            fail_if(problems)
            return None

        def service() -> str:
            broker = repo.deployment("broker")
            service = repo.one("Service")
            selector = service["spec"].get("selector") or {}
            problems = []
            pod_labels = broker["spec"]["template"]["metadata"].get("labels") or {}
            if not labels_match(selector, pod_labels):
                problems.append(f"{name_of(service)} selects {show_labels(selector)}, which the broker pods ({show_labels(pod_labels)}) do not all carry")
            for other in repo.objects_of_kind("Deployment"):
                if other is not broker and labels_match(selector, other["spec"]["template"]["metadata"].get("labels") or {}):
                    problems.append(f"{name_of(service)} also selects the pods of {name_of(other)}")
            container = broker["spec"]["template"]["spec"]["containers"][0]
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
            spool_port = int(literal_env(container, "SPOOL_PORT") or BROKER_DEFAULT_PORT)
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                number = ports.get(target) if isinstance(target, str) else target
                if number is None:
                    problems.append(f"{name_of(service)} port {port['port']} targets {target!r}, which the broker container does not declare")
                elif number != spool_port:
                    problems.append(f"{name_of(service)} port {port['port']} targets {number}, but the broker listens on SPOOL_PORT {spool_port}")
            if 80 not in [p["port"] for p in service["spec"]["ports"]]:
                problems.append(f"{name_of(service)} does not listen on port 80")
            fail_if(problems)
            return f"{service['metadata']['name']}: 80 -> {spool_port}, selecting {show_labels(selector)}"

        def probes() -> str:
            broker = repo.deployment("broker")
            container = broker["spec"]["template"]["spec"]["containers"][0]
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
            spool_port = int(literal_env(container, "SPOOL_PORT") or BROKER_DEFAULT_PORT)
            problems = []
            for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                probe = container.get(probe_name)
                if not probe or "httpGet" not in probe:
                    problems.append(f"the broker has no HTTP {probe_name}")
                    continue
                get = probe["httpGet"]
                if get.get("path") != path:
                    problems.append(f"the broker's {probe_name} asks {get.get('path')}; expected {path}")
                port = ports.get(get["port"]) if isinstance(get["port"], str) else get["port"]
                if port != spool_port:
                    problems.append(f"the broker's {probe_name} probes port {get['port']!r}, not the broker's SPOOL_PORT {spool_port}")
            readiness = container.get("readinessProbe") or {}
            if readiness.get("timeoutSeconds", 1) <= BROKER_DATABASE_TIMEOUT_SECONDS:
                problems.append(
                    f"the readinessProbe's timeoutSeconds ({readiness.get('timeoutSeconds', 1)}) must exceed the"
                    f" {BROKER_DATABASE_TIMEOUT_SECONDS} s /readyz gives the database"
                )
            fail_if(problems)
            return f"readiness /readyz (timeout {readiness.get('timeoutSeconds')} s), liveness /healthz, on {spool_port}"

        def secret_refs() -> str:
            secrets = repo.secret_keys()
            problems, references = [], 0
            for _, obj in repo.kubernetes_objects():
                pod = ((obj.get("spec") or {}).get("template") or {}).get("spec")
                for container in pod_containers(pod) if pod else []:
                    for entry in container.get("env") or []:
                        reference = (entry.get("valueFrom") or {}).get("secretKeyRef")
                        if not reference:
                            continue
                        references += 1
                        if reference["name"] not in secrets:
                            problems.append(f"{name_of(obj)} container {container['name']} env {entry['name']}: no Secret {reference['name']} in secret.yaml")
                        elif reference["key"] not in secrets[reference["name"]]:
                            problems.append(
                                f"{name_of(obj)} container {container['name']} env {entry['name']}: Secret {reference['name']} has no key"
                                f" {reference['key']!r} (it has {', '.join(sorted(secrets[reference['name']]))})"
                            )
                    for source in container.get("envFrom") or []:
                        if "secretRef" in source:
                            references += 1
                            if source["secretRef"]["name"] not in secrets:
                                problems.append(f"{name_of(obj)} container {container['name']} envFrom: no Secret {source['secretRef']['name']}")
                for volume in (pod or {}).get("volumes") or []:
                    if "secret" in volume:
                        references += 1
                        if volume["secret"]["secretName"] not in secrets:
                            problems.append(f"{name_of(obj)} volume {volume['name']}: no Secret {volume['secret']['secretName']}")
                if obj.get("kind") in ("TriggerAuthentication", "ClusterTriggerAuthentication"):
                    for reference in obj["spec"].get("secretTargetRef") or []:
                        references += 1
                        if reference["key"] not in secrets.get(reference["name"], set()):
                            problems.append(f"{name_of(obj)} secretTargetRef {reference['parameter']}: Secret {reference['name']} has no key {reference['key']!r}")
            fail_if(problems)
            return f"{references} references into {', '.join(f'{n} ({len(k)} keys)' for n, k in secrets.items())}"

        def api_keys() -> str:
            broker = repo.deployment("broker")["spec"]["template"]["spec"]["containers"][0]
            entries = broker.get("env") or []
            names = [e["name"] for e in entries]
            if "SPOOL_API_KEYS" not in names:
                raise CheckFailed("the broker has no SPOOL_API_KEYS: a broker listening beyond loopback refuses to start without a key")
            position = names.index("SPOOL_API_KEYS")
            entry = entries[position]
            feeding: set[tuple[str, str]] = set()
            problems = []
            if "valueFrom" in entry:
                reference = entry["valueFrom"].get("secretKeyRef") or {}
                feeding.add((reference.get("name"), reference.get("key")))
            else:
                for variable in re.findall(r"\$\((\w+)\)", entry.get("value", "")):
                    if variable not in names[:position]:
                        problems.append(f"SPOOL_API_KEYS uses $({variable}), which is not defined before it (Kubernetes would leave it unexpanded)")
                        continue
                    reference = (entries[names.index(variable)].get("valueFrom") or {}).get("secretKeyRef") or {}
                    feeding.add((reference.get("name"), reference.get("key")))
            worker = repo.deployment("worker")["spec"]["template"]["spec"]
            for container in worker["containers"]:
                reference = ((env_of(container).get("SPOOL_API_KEY") or {}).get("valueFrom") or {}).get("secretKeyRef")
                if reference and (reference["name"], reference["key"]) not in feeding:
                    problems.append(f"the worker's SPOOL_API_KEY ({reference['name']}/{reference['key']}) is not among the broker's SPOOL_API_KEYS")
            for authentication in repo.objects_of_kind("TriggerAuthentication"):
                for reference in authentication["spec"].get("secretTargetRef") or []:
                    if reference["parameter"] in ("token", "apiKey") and (reference["name"], reference["key"]) not in feeding:
                        problems.append(f"{name_of(authentication)}'s {reference['parameter']} ({reference['name']}/{reference['key']}) is not among the broker's SPOOL_API_KEYS")
            fail_if(problems)
            return "SPOOL_API_KEYS = " + ", ".join(f"{n}/{k}" for n, k in sorted(feeding))

        def drain() -> str:
            worker = repo.deployment("worker")
            pod = worker["spec"]["template"]["spec"]
            grace = pod.get("terminationGracePeriodSeconds", 30)
            problems, summary = [], []
            for container in pod["containers"]:
                if (container.get("command") or [""])[0] != "spool-worker":
                    continue
                value = literal_env(container, "SPOOL_DRAIN_SECONDS")
                drain_seconds = float(value) if value is not None else 30.0
                summary.append(f"terminationGracePeriodSeconds {grace} > SPOOL_DRAIN_SECONDS {value or '30 (default)'}")
                if grace <= drain_seconds:
                    problems.append(
                        f"{name_of(worker)}: terminationGracePeriodSeconds ({grace}) must exceed the container {container['name']}'s"
                        f" SPOOL_DRAIN_SECONDS ({drain_seconds:g}), or Kubernetes kills it before it hands unfinished jobs back"
                    )
            if not summary:
                problems.append(f"{name_of(worker)} runs no spool-worker container")
            fail_if(problems)
            return "; ".join(summary)

        def worker_urls() -> str:
            worker = repo.deployment("worker")
            service = repo.one("Service")
            pod = worker["spec"]["template"]["spec"]
            problems, summary = [], []
            pod_ports = {p["containerPort"] for c in pod_containers(pod) for p in c.get("ports") or []}
            for container in pod["containers"]:
                if (container.get("command") or [""])[0] != "spool-worker":
                    continue
                for url in (literal_env(container, "SPOOL_BROKER_URL") or "").split(","):
                    problems += service_url_problems(url.strip(), service, "SPOOL_BROKER_URL")
                    summary.append(f"brokers at {url.strip()}")
                arguments = container.get("args") or []
                if "--forward" in arguments:
                    target = urlsplit(arguments[arguments.index("--forward") + 1])
                    if target.hostname not in ("127.0.0.1", "localhost", "::1"):
                        problems.append(f"--forward {target.geturl()}: the inference server is meant to be in the pod, on localhost")
                    port = target.port or 80
                    others = [c for c in pod_containers(pod) if c is not container]
                    if port not in {p["containerPort"] for c in others for p in c.get("ports") or []}:
                        problems.append(f"--forward {target.geturl()}: no other container in the pod declares port {port} (pod ports: {sorted(pod_ports)})")
                    summary.append(f"--forward to port {port} of a sidecar")
            fail_if(problems)
            return "; ".join(summary)

        def scale_target() -> str:
            worker = repo.deployment("worker")
            scaled = repo.one("ScaledObject")
            reference = scaled["spec"]["scaleTargetRef"]
            problems = []
            if reference.get("kind", "Deployment") != "Deployment" or reference.get("apiVersion", "apps/v1") != "apps/v1":
                problems.append(f"scaleTargetRef is a {reference.get('apiVersion')} {reference.get('kind')}; the workers are an apps/v1 Deployment")
            if reference["name"] != worker["metadata"]["name"]:
                problems.append(f"scaleTargetRef.name is {reference['name']!r}; the worker Deployment is {worker['metadata']['name']!r}")
            if scaled["metadata"].get("namespace") != worker["metadata"].get("namespace"):
                problems.append("the ScaledObject and the worker Deployment are in different namespaces")
            if worker["spec"].get("replicas") is not None:
                problems.append(f"{name_of(worker)} sets spec.replicas: KEDA owns the count, and every `kubectl apply` would reset it")
            authentications = {a["metadata"]["name"] for a in repo.objects_of_kind("TriggerAuthentication")}
            for trigger in scaled["spec"]["triggers"]:
                reference_name = (trigger.get("authenticationRef") or {}).get("name")
                kind = (trigger.get("authenticationRef") or {}).get("kind", "TriggerAuthentication")
                if reference_name and kind == "TriggerAuthentication" and reference_name not in authentications:
                    problems.append(f"trigger {trigger.get('name', trigger['type'])}: no TriggerAuthentication {reference_name!r}")
            fail_if(problems)
            return f"{name_of(scaled)} -> {name_of(worker)}"

        def scale_trigger() -> str:
            worker = repo.deployment("worker")
            scaled = repo.one("ScaledObject")
            service = repo.one("Service")
            container = next(c for c in worker["spec"]["template"]["spec"]["containers"] if (c.get("command") or [""])[0] == "spool-worker")
            models = [m.strip() for m in (literal_env(container, "SPOOL_MODELS") or "").split(",") if m.strip()]
            concurrency = literal_env(container, "SPOOL_CONCURRENCY") or "1"
            fields = queue_metrics_fields(repo.root)
            problems, summary = [], []
            spec = scaled["spec"]
            if spec.get("minReplicaCount", 0) != 0:
                problems.append(f"minReplicaCount is {spec.get('minReplicaCount')}; the workers should scale to zero when idle")
            if "cooldownPeriod" not in spec:
                problems.append("no cooldownPeriod: say how long an idle queue waits before the workers go to zero")
            triggers = [t for t in spec["triggers"] if t["type"] == "metrics-api"]
            if not triggers:
                problems.append("no metrics-api trigger on the broker's /v1/queue/metrics")
            for trigger in triggers:
                metadata = trigger["metadata"]
                url = metadata.get("url", "")
                problems += service_url_problems(url, service, "the metrics-api url")
                parts = urlsplit(url)
                if parts.path != "/v1/queue/metrics":
                    problems.append(f"the metrics-api url asks {parts.path}; the broker's queue metrics are at /v1/queue/metrics")
                asked = parse_qs(parts.query).get("model", [])
                if asked != models:
                    problems.append(f"the metrics-api url asks for model {asked}, but the worker serves SPOOL_MODELS {models}")
                if metadata.get("valueLocation") not in fields:
                    problems.append(
                        f"valueLocation {metadata.get('valueLocation')!r} is not a field of the broker's answer"
                        f" ({', '.join(fields)}: Sources/SpoolCore/QueueAPI.swift)"
                    )
                if metadata.get("authMode") != "bearer" or not trigger.get("authenticationRef"):
                    problems.append("the broker wants the key as a Bearer token: authMode bearer with an authenticationRef")
                if metadata.get("valueLocation") in ("total_jobs", "messages_running") and not same_number(metadata.get("targetValue"), concurrency):
                    problems.append(
                        f"targetValue {metadata.get('targetValue')} should equal the worker's SPOOL_CONCURRENCY ({concurrency}):"
                        " jobs per pod"
                    )
                summary.append(f"{metadata.get('valueLocation')} of {','.join(asked)}, target {metadata.get('targetValue')}")
            fail_if(problems)
            return "; ".join(summary) + f", min {spec.get('minReplicaCount', 0)}, max {spec.get('maxReplicaCount', 100)}"

        def ingress() -> str:
            service = repo.one("Service")
            name = service["metadata"]["name"]
            prefix = "nginx.ingress.kubernetes.io/"
            problems, summary = [], []
            for obj in repo.objects_of_kind("Ingress"):
                spec = obj.get("spec") or {}
                annotations = obj["metadata"].get("annotations") or {}
                regex = annotations.get(prefix + "use-regex") == "true"
                paths = [
                    (entry.get("pathType"), entry.get("path", "/"))
                    for rule in spec.get("rules") or []
                    for entry in (rule.get("http") or {}).get("paths") or []
                    if ((entry.get("backend") or {}).get("service") or {}).get("name") == name
                ]
                default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name") == name

                def reaches(request: str) -> bool:
                    for kind, path in paths:
                        if kind == "Exact" and request == path:
                            return True
                        if kind == "ImplementationSpecific" and regex:
                            if re.match(path, request, re.IGNORECASE):
                                return True
                        elif kind != "Exact" and (path.rstrip("/") == "" or request == path.rstrip("/") or request.startswith(path.rstrip("/") + "/")):
                            return True
                    return default

                uploads = [label for label, path in UPLOAD_PATHS.items() if reaches(path)]
                others = [label for label, path in ORDINARY_PATHS.items() if reaches(path)]
                if not uploads and not others:
                    continue
                if spec.get("ingressClassName") and "nginx" not in spec["ingressClassName"] and not any(a.startswith(prefix) for a in annotations):
                    summary.append(f"{name_of(obj)} (class {spec['ingressClassName']}: not ingress-nginx, unchecked)")
                    continue
                body = str(annotations.get(prefix + "proxy-body-size", "1m"))
                size = nginx_bytes(body)
                if uploads and size != 0 and size < BROKER_MAX_FILE_BYTES + BROKER_MULTIPART_ALLOWANCE:
                    problems.append(
                        f"{name_of(obj)} routes {', '.join(uploads)} to the broker with {prefix}proxy-body-size {body}: give it at least"
                        f" the broker's --max-file-bytes ({BROKER_MAX_FILE_BYTES} bytes) plus {BROKER_MULTIPART_ALLOWANCE // 1024} KiB"
                    )
                if uploads and annotations.get(prefix + "proxy-request-buffering") != "off":
                    problems.append(f"{name_of(obj)} routes {', '.join(uploads)} to the broker without {prefix}proxy-request-buffering: \"off\": uploads would be spooled to the controller's disk")
                if others and size != 0 and size < BROKER_MAX_BODY_BYTES:
                    problems.append(f"{name_of(obj)} routes {', '.join(others)} to the broker with {prefix}proxy-body-size {body}, below the broker's {BROKER_MAX_BODY_BYTES} bytes")
                summary.append(f"{name_of(obj)}: proxy-body-size {body}" + (", proxy-request-buffering off" if uploads else ""))
            fail_if(problems)
            return "; ".join(summary) if summary else f"no Ingress to the Service {name} in deploy/kubernetes/ (broker.yaml's comment says what one needs)"

        self.run("kubernetes: every object and pod template carries the app.kubernetes.io labels", labels)
        self.run("kubernetes: every object is in the same namespace", namespace)
        self.run("kubernetes: Deployment and PodDisruptionBudget selectors match their pods", selectors)
        self.run("kubernetes: the Service selects the broker pods and targets the broker's port", service)
        self.run("kubernetes: broker readiness and liveness probes", probes)
        self.run("kubernetes: every secretKeyRef (and KEDA secretTargetRef) names a key in secret.yaml", secret_refs)
        self.run("kubernetes: the broker accepts the workers' and KEDA's keys", api_keys)
        self.run("kubernetes: worker terminationGracePeriodSeconds exceeds its SPOOL_DRAIN_SECONDS", drain)
        self.run("kubernetes: the worker reaches the broker Service and forwards to a sidecar on localhost", worker_urls)
        self.run("kubernetes: an Ingress to the broker takes --max-file-bytes uploads, unbuffered", ingress)
        self.run("keda: the ScaledObject scales the worker Deployment, with an existing TriggerAuthentication", scale_target)
        self.run("keda: the metrics-api trigger reads the broker Service's queue metrics for the worker's model", scale_trigger)

    # -- Compose and nginx ---------------------------------------------------------------------

    def compose_checks(self) -> None:
        repo = self.repo

        def structure() -> str:
            services = repo.compose_services()
            problems = []
            for name, service in services.items():
                if "image" not in service and "build" not in service:
                    problems.append(f"service {name} has neither image nor build")
                build = service.get("build")
                if isinstance(build, dict):
                    context = repo.root / build.get("context", ".")
                    dockerfile = context / build.get("dockerfile", "Dockerfile")
                    if not dockerfile.is_file():
                        problems.append(f"service {name} builds {repo.rel(dockerfile) if dockerfile.is_relative_to(repo.root) else dockerfile}, which does not exist")
                    if context.resolve() != repo.root.resolve():
                        problems.append(f"service {name} builds with context {build.get('context')}; deploy/Dockerfile expects the repository root")
                depends = service.get("depends_on") or {}
                if isinstance(depends, list):
                    depends = {d: {"condition": "service_started"} for d in depends}
                for other, condition in depends.items():
                    if other not in services:
                        problems.append(f"service {name} depends on {other}, which is not a service")
                    elif (condition or {}).get("condition") == "service_healthy" and "healthcheck" not in services[other]:
                        problems.append(f"service {name} waits for {other} to be healthy, but {other} has no healthcheck")
                for volume in service.get("volumes") or []:
                    source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
                    if source.startswith((".", "/")) and not (repo.root / source).exists():
                        problems.append(f"service {name} mounts {source}, which does not exist")
                    elif isinstance(volume, str) and ":" in volume and not source.startswith((".", "/")) and source not in (repo.compose().get("volumes") or {}):
                        problems.append(f"service {name} mounts the volume {source}, which is not declared under volumes:")
            postgres = [n for n, s in services.items() if str(s.get("image", "")).startswith("postgres:")]
            if len(postgres) != 1:
                problems.append(f"expected one postgres service, found {postgres}")
            else:
                service = services[postgres[0]]
                if not re.match(r"postgres:1[5-9]", service["image"]):
                    problems.append(f"{postgres[0]} runs {service['image']}; use PostgreSQL 15 or later")
                if "healthcheck" not in service:
                    problems.append(f"{postgres[0]} has no healthcheck")
                if not service.get("volumes"):
                    problems.append(f"{postgres[0]} keeps its data in no volume")
            published = [f"{n}:{p}" for n, s in services.items() for p in s.get("ports") or []]
            if not published:
                problems.append("no service publishes a port to the host")
            fail_if(problems)
            return f"{len(services)} services; published {', '.join(published)}"

        def brokers() -> str:
            services = repo.compose_services()
            brokers = repo.compose_services_running("spool-broker")
            problems = []
            if len(brokers) < 2:
                problems.append(f"expected two broker services, found {sorted(brokers)}")
            postgres = next((n for n, s in services.items() if str(s.get("image", "")).startswith("postgres:")), None)
            for name, service in brokers.items():
                env = compose_environment(service)
                url = env.get("SPOOL_DATABASE_URL")
                if not url:
                    problems.append(f"{name} has no SPOOL_DATABASE_URL (the embedded PostgreSQL is not in the image)")
                elif urlsplit(url).hostname != postgres:
                    problems.append(f"{name}'s SPOOL_DATABASE_URL names host {urlsplit(url).hostname}, not the {postgres} service")
                if not env.get("SPOOL_API_KEYS"):
                    problems.append(f"{name} has no SPOOL_API_KEYS: a broker on 0.0.0.0 refuses to start without a key")
                depends = service.get("depends_on") or {}
                if not isinstance(depends, dict) or (depends.get(postgres) or {}).get("condition") != "service_healthy":
                    problems.append(f"{name} should depend on {postgres} with condition service_healthy")
                if "healthcheck" not in service:
                    problems.append(f"{name} has no healthcheck (on /readyz)")
            fail_if(problems)
            return ", ".join(sorted(brokers))

        def upstream() -> str:
            services = repo.compose_services()
            brokers = repo.compose_services_running("spool-broker")
            nginx = repo.nginx()
            problems, servers = [], []
            upstreams = nginx.find("upstream")
            if not upstreams:
                raise CheckFailed("deploy/nginx.conf has no upstream block")
            for block in upstreams:
                for server in block.find("server"):
                    address = server.args[0]
                    host, _, port = address.partition(":")
                    servers.append(address)
                    if host not in services:
                        problems.append(f"deploy/nginx.conf line {server.line}: upstream server {address}: no compose service {host!r}")
                    elif host not in brokers:
                        problems.append(f"deploy/nginx.conf line {server.line}: upstream server {address}: {host} does not run spool-broker")
                    else:
                        listening = int(compose_environment(services[host]).get("SPOOL_PORT") or BROKER_DEFAULT_PORT)
                        if int(port or 80) != listening:
                            problems.append(f"deploy/nginx.conf line {server.line}: {address}, but {host} listens on {listening}")
            missing = sorted(set(brokers) - {s.partition(":")[0] for s in servers})
            if missing:
                problems.append(f"broker services missing from the upstream: {', '.join(missing)}")
            proxied = {d.args[0].removeprefix("http://").split("/")[0] for d in nginx.find("proxy_pass")}
            unknown = proxied - {u.args[0] for u in upstreams}
            if unknown:
                problems.append(f"proxy_pass to {', '.join(sorted(unknown))}, which is not an upstream")
            fail_if(problems)
            return ", ".join(servers)

        def proxying() -> str:
            nginx = repo.nginx()
            routes, problems = repo.nginx_routes(ORDINARY_PATHS)
            summary = []
            for route, labels in group_routes(routes):
                what = f"{route.where()} (for {', '.join(labels)})"
                if route.value("proxy_buffering", "on") != "off":
                    problems.append(f"{what}: proxy_buffering off is missing: status streams (Server-Sent Events) would be buffered")
                seconds = nginx_seconds(route.value("proxy_read_timeout", "60s"))
                if seconds < 2 * LONG_POLL_SECONDS:
                    problems.append(f"{what}: proxy_read_timeout is {seconds:g} s; long-polls last {LONG_POLL_SECONDS} s and streams for minutes: give it at least {2 * LONG_POLL_SECONDS} s")
                body = route.value("client_max_body_size", "1m")
                size = nginx_bytes(body)
                if size != 0 and size < BROKER_MAX_BODY_BYTES:
                    problems.append(f"{what}: client_max_body_size is {size} bytes; the broker accepts up to {BROKER_MAX_BODY_BYTES} (10 MiB)")
                if route.value("proxy_http_version", "1.0") != "1.1":
                    problems.append(f"{what}: proxy_http_version 1.1 is missing (needed for keep-alive to the brokers)")
                summary.append(f"{route.where()}: proxy_buffering off, proxy_read_timeout {seconds:g} s, client_max_body_size {body}")
            lb = [n for n, s in repo.compose_services().items() if str(s.get("image", "")).startswith("nginx")]
            listens = {d.args[0].split(":")[-1] for d in nginx.find("listen")}
            if len(lb) != 1:
                problems.append(f"expected one nginx service in docker-compose.yml, found {lb}")
            else:
                service = repo.compose_services()[lb[0]]
                mounts = [v for v in service.get("volumes") or [] if isinstance(v, str)]
                if not any(m.split(":")[0].lstrip("./") == "deploy/nginx.conf" for m in mounts):
                    problems.append(f"{lb[0]} does not mount ./deploy/nginx.conf")
                inside = {str(p).split(":")[-1].split("/")[0] for p in service.get("ports") or []}
                if not inside & listens:
                    problems.append(f"{lb[0]} publishes container port(s) {sorted(inside)}, but nginx listens on {sorted(listens)}")
            fail_if(problems)
            return f"{'; '.join(summary)}; listen {', '.join(sorted(listens))}"

        def uploads() -> str:
            file_limit = BROKER_MAX_FILE_BYTES + BROKER_MULTIPART_ALLOWANCE
            routes, problems = repo.nginx_routes(UPLOAD_PATHS)
            ordinary, _ = repo.nginx_routes(ORDINARY_PATHS)  # proxying() reports the paths no location handles
            proxy_settings = {d.name for d in nginx_all(repo.nginx()) if d.name.startswith("proxy_")} - {"proxy_request_buffering"}
            summary = []
            for route, labels in group_routes(routes):
                what = f"{route.where()}, which handles {', '.join(f'{label} ({UPLOAD_PATHS[label]})' for label in labels)}"
                body = route.value("client_max_body_size", "1m")
                size = nginx_bytes(body)
                if size != 0 and size < file_limit:
                    problems.append(
                        f"{what}: client_max_body_size {body} is below the broker's --max-file-bytes ({BROKER_MAX_FILE_BYTES} bytes, 4 GiB)"
                        f" plus {BROKER_MULTIPART_ALLOWANCE // 1024} KiB for a multipart POST's fields: nginx would refuse larger uploads with its own 413"
                    )
                if route.value("proxy_request_buffering", "on") != "off":
                    problems.append(f"{what}: proxy_request_buffering off is missing: nginx would spool each upload to its disk before the broker sees any of it")
                reference = nginx_route(route.blocks[:-1], next(iter(ORDINARY_PATHS.values())))
                if reference is not None and reference.location is not route.location:
                    for name in sorted(proxy_settings):
                        mine, theirs = show_directives(route.effective(name)), show_directives(reference.effective(name))
                        if mine != theirs:
                            problems.append(f"{what}: {name} is {mine}, but {reference.where()} has {theirs}: proxy uploads as other requests are")
                summary.append(f"{', '.join(labels)} -> {route.where()}: client_max_body_size {body}, proxy_request_buffering off")
            for route, labels in group_routes(ordinary):
                body = route.value("client_max_body_size", "1m")
                size = nginx_bytes(body)
                if size == 0 or size >= BROKER_MAX_FILE_BYTES:
                    problems.append(
                        f"{route.where()}, which handles {', '.join(labels)}: client_max_body_size {body}, but only the upload routes take"
                        f" file-sized bodies: keep other requests near the broker's --max-body-bytes ({BROKER_MAX_BODY_BYTES} bytes)"
                    )
                summary.append(f"{len(labels)} other routes -> {route.where()}: client_max_body_size {body}")
            fail_if(problems)
            return "; ".join(summary)

        def workers() -> str:
            services = repo.compose_services()
            workers = repo.compose_services_running("spool-worker")
            brokers = repo.compose_services_running("spool-broker")
            nginx = repo.nginx()
            listens = {d.args[0].split(":")[-1] for d in nginx.find("listen")}
            lb = next((n for n, s in services.items() if str(s.get("image", "")).startswith("nginx")), None)
            problems, count = [], 0
            copied = {c.destination for c in repo.runtime_copies() if "from" not in c.flags}
            workdir = repo.image_workdir()
            broker_keys = {compose_environment(s).get("SPOOL_API_KEYS") for s in brokers.values()}
            for name, service in workers.items():
                count += ((service.get("deploy") or {}).get("replicas") or 1)
                env = compose_environment(service)
                for url in (env.get("SPOOL_BROKER_URL") or "").split(","):
                    parts = urlsplit(url.strip())
                    if parts.hostname != lb:
                        problems.append(f"{name}'s SPOOL_BROKER_URL {url} does not go through the load balancer ({lb})")
                    elif str(parts.port or 80) not in listens:
                        problems.append(f"{name}'s SPOOL_BROKER_URL {url}: nginx listens on {sorted(listens)}")
                if env.get("SPOOL_API_KEY") not in broker_keys:
                    problems.append(f"{name}'s SPOOL_API_KEY is not the brokers' SPOOL_API_KEYS")
                command = repo.compose_command(service)
                if "--exec" in command:
                    handler = shlex.split(command[command.index("--exec") + 1])
                    scripts = [w for w in handler if w.endswith(".py")]
                    for script in scripts:
                        path = script if script.startswith("/") else f"{workdir.rstrip('/')}/{script}"
                        if path not in copied:
                            problems.append(f"{name} runs {script}, but the image copies no {path} (it copies {', '.join(sorted(copied))})")
                    if "python3" in handler[:1] and "python3" not in " ".join(i.text for i in repo.dockerfile()[1][-1].all("RUN")):
                        problems.append(f"{name} runs python3, which the image does not install")
                drain_seconds = float(env.get("SPOOL_DRAIN_SECONDS") or 30)
                grace = compose_seconds(service.get("stop_grace_period", "10s"))
                if grace <= drain_seconds:
                    problems.append(
                        f"{name}: stop_grace_period ({grace:g} s) must exceed SPOOL_DRAIN_SECONDS ({drain_seconds:g} s), or Docker kills"
                        " workers before they hand unfinished jobs back"
                    )
            if count < 2:
                problems.append(f"expected two workers, found {count}")
            fail_if(problems)
            return f"{count} workers via {lb}, stop_grace_period above SPOOL_DRAIN_SECONDS"

        def programs() -> str:
            binaries = repo.image_binaries()
            images = repo.compose_spool_images()
            problems, seen = [], set()
            for name, service in repo.compose_services().items():
                if service.get("image") in images:
                    program = (repo.compose_command(service) or [""])[0]
                    seen.add(program)
                    if program not in binaries:
                        problems.append(f"compose service {name} runs {program!r}, which the image does not contain ({', '.join(sorted(binaries))})")
            for _, obj in repo.kubernetes_objects():
                pod = ((obj.get("spec") or {}).get("template") or {}).get("spec")
                for container in pod_containers(pod) if pod else []:
                    repository = container.get("image", "").rsplit("/", 1)[-1].split(":")[0].split("@")[0]
                    if repository == "spool":  # the image built from deploy/Dockerfile
                        program = (container.get("command") or ["spool-broker"])[0]
                        seen.add(program)
                        if program not in binaries:
                            problems.append(f"{name_of(obj)} container {container['name']} runs {program!r}, which the image does not contain")
            if not seen:
                problems.append("no compose service or Kubernetes container runs the Spool image")
            fail_if(problems)
            return ", ".join(sorted(seen))

        self.run("docker-compose.yml: services, builds, depends_on conditions, healthchecks, volumes, ports", structure)
        self.run("docker-compose.yml: two brokers on the postgres service, with an API key, waiting for it to be healthy", brokers)
        self.run("nginx.conf: the upstream names the compose broker services on their port", upstream)
        self.run("nginx.conf: unbuffered, long read timeout, 10 MiB bodies, listening on the published port", proxying)
        self.run("nginx.conf: the upload routes take --max-file-bytes bodies, streamed; other routes stay near --max-body-bytes", uploads)
        self.run("docker-compose.yml: workers go through nginx with the brokers' key, their handler is in the image", workers)
        self.run("commands in docker-compose.yml and the manifests are binaries the image contains", programs)


def schema_problems(validator: Any, instance: Any) -> list[str]:
    """Every schema error, as "path: message". Where a oneOf/anyOf/if-then failed, its deepest
    reasons are reported; an unevaluatedProperties error that only echoes a deeper error is left out."""

    def leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
        if not error.context:
            return [error]
        found = [leaf for child in error.context for leaf in leaves(child)]
        deepest = max(len(leaf.absolute_path) for leaf in found)
        return [leaf for leaf in found if len(leaf.absolute_path) == deepest]

    reported: list[tuple[tuple[str, ...], str]] = []
    for error in validator.iter_errors(instance):
        for leaf in leaves(error):
            reported.append((tuple(map(str, leaf.absolute_path)), leaf.message if leaf.validator != "unevaluatedProperties" else "\0" + leaf.message))
    paths = {path for path, message in reported if not message.startswith("\0")}
    problems = set()
    for path, message in reported:
        if message.startswith("\0"):
            if any(other[: len(path)] == path and other != path for other in paths):
                continue
            message = message[1:]
        problems.add(f"{'.'.join(path) or '(top)'}: {message}")
    return sorted(problems)


def queue_metrics_fields(root: Path) -> list[str]:
    """The fields of the broker's GET /v1/queue/metrics answer, read from its Swift type."""
    source = (root / "Sources" / "SpoolCore" / "QueueAPI.swift").read_text()
    match = re.search(r"struct\s+QueueMetricsResponse\b[^{]*\{(.*?)\n\}", source, re.S)
    if not match:
        raise CheckFailed("Sources/SpoolCore/QueueAPI.swift has no struct QueueMetricsResponse")
    return re.findall(r"\bvar\s+(\w+)\s*:", match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the repository (default: this file's)")
    options = parser.parse_args()
    repository = Repository(options.root.resolve())
    checker = Checker(repository)
    print(f"Checking {repository.root} (kubernetes-validate {importlib.metadata.version('kubernetes-validate')},"
          f" jsonschema {importlib.metadata.version('jsonschema')}, PyYAML {yaml.__version__})")
    checker.yaml_checks()
    checker.kubernetes_schema_checks()
    checker.compose_schema_check()
    checker.dockerfile_checks()
    checker.kubernetes_checks()
    checker.compose_checks()
    print()
    if checker.failures:
        skipped = f" ({checker.skipped} more could not run)" if checker.skipped else ""
        print(f"{checker.failures} of {checker.failures + checker.passes} checks failed{skipped}.")
        return 1
    print(f"All {checker.passes} checks passed. (Static only: no image was built and nothing was run.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
