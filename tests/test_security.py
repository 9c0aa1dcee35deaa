"""Security claims of docs/security.md that a test can hold: no code from data, loopback-only --no-auth, the JWT
algorithms, the dependency lock, and that the files the review cites exist."""

from __future__ import annotations

import ast
import io
import json
import re
import time
import tokenize
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "engine"
PACKAGE = ENGINE / "radiopal"
SOURCES = sorted(ENGINE.rglob("*.py"))

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
UNSAFE_YAML_FUNCTIONS = {"unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
UNSAFE_YAML_LOADERS = {"Loader", "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _name(node: ast.AST) -> str:
    """``yaml.load`` for an attribute chain, ``eval`` for a name, else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def findings(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    where = path.relative_to(root)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            out += [f"{where}:{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            out.append(f"{where}:{line}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            if name in FORBIDDEN_CALLS or name in {f"builtins.{n}" for n in FORBIDDEN_CALLS}:
                out.append(f"{where}:{line}: {name}(...)")
            if name in ("os.system", "os.popen") or name.startswith("os.exec") or name.startswith("os.spawn"):
                out.append(f"{where}:{line}: {name}(...)")
            if name.startswith("yaml.") and name.split(".")[-1] in UNSAFE_YAML_FUNCTIONS:
                out.append(f"{where}:{line}: {name}(...)")
            if name in ("yaml.load", "yaml.load_all"):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"),
                              node.args[1] if len(node.args) > 1 else None)
                if loader is None or _name(loader).split(".")[-1] not in SAFE_YAML_LOADERS:
                    out.append(f"{where}:{line}: {name}(...) without SafeLoader")
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                    out.append(f"{where}:{line}: {name}(..., shell=...)")
        elif isinstance(node, ast.Attribute) and _name(node.value) == "yaml" and node.attr in UNSAFE_YAML_LOADERS:
            out.append(f"{where}:{line}: yaml.{node.attr}")
    return out


def test_there_are_sources_to_check() -> None:
    assert len(SOURCES) > 40 and PACKAGE / "yamlio.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ENGINE)) for p in SOURCES])
def test_no_code_from_data(path: Path) -> None:
    """No eval/exec/compile/__import__, pickle-like modules, unsafe YAML loaders, os.system or shell=True."""
    assert findings(path) == []


CODE_PATTERNS = re.compile(r"(?<![\w.])(eval|exec)\s*\(|\byaml\.load(_all)?\s*\(|\bpickle\b|\bmarshal\b")


def code_only(path: Path) -> str:
    """The module's code with comments and string literals (docstrings included) blanked out."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            continue
        out.append(tok.string)
    return " ".join(out)


def test_grep_finds_no_eval_exec_unsafe_yaml_or_pickle_in_engine_code() -> None:
    """The literal grep the review promises (on code, not on comments or docstrings), beside the AST check."""
    hits = []
    for path in SOURCES:
        for match in CODE_PATTERNS.finditer(code_only(path)):
            context = code_only(path)[match.start():match.start() + 80]
            if match.group(0).startswith("yaml.load") and re.search(r"Loader\s*=\s*yaml\.C?SafeLoader", context):
                continue
            hits.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert hits == []


def test_the_check_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport yaml\nimport subprocess\nx = eval('1')\nyaml.load('a', Loader=yaml.Loader)\n"
                   "yaml.load('a')\nsubprocess.run('ls', shell=True)\n", encoding="utf-8")
    found = findings(bad, root=tmp_path)
    assert len(found) == 6, found
    assert CODE_PATTERNS.search(code_only(bad))


# --- authentication -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "allowed"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("192.168.1.10", False), ("example.org", False),
])
def test_no_auth_only_on_loopback(host: str, allowed: bool) -> None:
    from radiopal.errors import RadiopalError
    from radiopal.service.settings import Settings

    settings = Settings(host=host, no_auth=True)
    if allowed:
        settings.check()
    else:
        with pytest.raises(RadiopalError, match="only allowed on a loopback address"):
            settings.check()


def test_without_no_auth_a_jwks_and_issuer_are_required() -> None:
    from radiopal.errors import RadiopalError
    from radiopal.service.settings import Settings

    for host in ("127.0.0.1", "0.0.0.0"):
        with pytest.raises(RadiopalError, match="without authentication"):
            Settings(host=host).check()


def test_only_rs384_and_es384_are_accepted(tmp_path: Path) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    from radiopal.service.auth import ALLOWED_ALGORITHMS, Authenticator
    from radiopal.service.errors import ServiceError

    assert ALLOWED_ALGORITHMS == ("RS384", "ES384")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="RS384", use="sig")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    auth = Authenticator(str(tmp_path / "jwks.json"), ["https://ehr.example"])
    aud = "http://127.0.0.1:8080/cds-services/radiopal-patient-view"
    claims = {"iss": "https://ehr.example", "aud": aud, "exp": int(time.time()) + 60, "jti": "a"}

    assert auth.verify(f"Bearer {jwt.encode(claims, key, 'RS384', headers={'kid': 'k1'})}", aud).jti == "a"
    attacks = {
        "none": jwt.encode({**claims, "jti": "b"}, None, "none", headers={"kid": "k1"}),
        "HS384": jwt.encode({**claims, "jti": "c"}, "a-shared-secret-" * 4, "HS384", headers={"kid": "k1"}),
        "RS256": jwt.encode({**claims, "jti": "d"}, key, "RS256", headers={"kid": "k1"}),
        "replay": jwt.encode(claims, key, "RS384", headers={"kid": "k1"}),
        "other audience": jwt.encode({**claims, "jti": "e", "aud": aud + "x"}, key, "RS384", headers={"kid": "k1"}),
        "issuer not allowed": jwt.encode({**claims, "jti": "f", "iss": "https://evil.example"}, key, "RS384",
                                         headers={"kid": "k1"}),
        "expired": jwt.encode({**claims, "jti": "g", "exp": int(time.time()) - 3600}, key, "RS384",
                              headers={"kid": "k1"}),
        "no jti": jwt.encode({k: v for k, v in claims.items() if k != "jti"}, key, "RS384", headers={"kid": "k1"}),
        "no kid": jwt.encode({**claims, "jti": "h"}, key, "RS384"),
    }
    for what, token in attacks.items():
        with pytest.raises(ServiceError) as caught:
            auth.verify(f"Bearer {token}", aud)
        assert caught.value.status == 401, what
        assert token not in caught.value.message, what


# --- dependencies -------------------------------------------------------------------------------------------------
LOCK = REPO / "requirements.lock"


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert match, f"requirements.lock: not an exact pin: {line!r}"
        pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def test_lock_pins_every_declared_dependency_exactly() -> None:
    from packaging.requirements import Requirement

    pins = lock_pins()
    assert "radiopal" not in pins
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += [r for r in extra if not r.startswith("radiopal")]
    for text in declared:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{requirement.name} (pyproject.toml) is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}"


# --- the review cites files that exist ----------------------------------------------------------------------------
def test_files_named_in_the_security_review_exist() -> None:
    text = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w./-]+\.(?:py|md|json|yaml|lock|toml))`", text))
    assert len(named) > 15
    missing = [n for n in sorted(named) if not ((REPO / n).exists() or (PACKAGE / n).exists())]
    assert missing == []
