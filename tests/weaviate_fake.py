"""A fake Weaviate 1.33 on loopback that speaks the real wire protocol (REST + gRPC), so the real
`weaviate-client` v4, and with it `WeaviateStore`, runs against it unmodified::

    with running_weaviate() as fake:
        client = ragcord.knowledge.stores.weaviate.connect(fake.http_url, grpc_port=fake.grpc_port)

REST runs on the stdlib ThreadingHTTPServer, gRPC on grpcio with the `weaviate.v1.Weaviate` servicer generated
in the client (weaviate/proto/v1/v6300 with protobuf 6), each on a free 127.0.0.1 port in background threads.
All data lives in memory, per collection and per tenant.

Faked the way the real server does it:

- REST: ``/v1/.well-known/{ready,live}``, ``/v1/meta`` (1.33.4, as our docker-compose pins), the schema
  (list, create, get, delete a class, add a property; the stored class gets the server's defaults, so
  ``collection.config.get()`` parses) and tenants (create, list, get, HEAD exists, remove).
- gRPC: the health check, ``BatchObjects`` (upsert by uuid, per-object errors in the reply),
  ``BatchDelete`` (filters, dry run, verbose), ``Search`` (fetch with filters, the ``after`` cursor, ``bm25``,
  ``near_vector``, ``hybrid`` with relativeScoreFusion and rankedFusion, return properties, metadata and
  vectors, limit, offset), ``Aggregate`` (``total_count``, with filters) and ``TenantsGet``
  (the client's ``tenants.get()``).
- Multi-tenancy: data operations on a multi-tenant class need an existing tenant (``autoTenantCreation`` is
  honoured); a single-tenant class refuses a tenant. The error messages are the server's.
- Each tenant (shard) has its own index per named vector: its first vector fixes the length, and a vector of
  another length fails for that object only ("new node has a vector with length 3. Existing nodes have
  vectors with length 4"); a query vector of the wrong length fails the query.
- Property values are checked against the schema (an int property refuses 1.5); unknown properties are added
  like the server's auto-schema does (text, number, boolean, and arrays of those and of int).
- BM25 is Weaviate's: idf = ln(1 + (N - n + 0.5) / (n + 0.5)), tf = f / (f + k1 (1 - b + b |d| / avg |d|)),
  k1 and b from the class (1.2, 0.75), the property's tokenization (word, lowercase, whitespace, field), the
  "en" stop words dropped from the query, any query term matching (OR).
- Hybrid: relativeScoreFusion min-max normalises each list (1 - distance for vectors; all equal -> 1) and adds
  alpha * vector + (1 - alpha) * keyword; rankedFusion adds alpha / (60 + rank) and (1 - alpha) / (60 + rank),
  ranks from 0. alpha 0 needs no vector; alpha > 0 without one fails (there is no vectorizer).
- Filters: Equal, NotEqual, GreaterThan(Equal), LessThan(Equal), Like, ContainsAny/All/None, And, Or, Not on
  text, int, number and boolean properties (and arrays) and on ``_id``. Text matches index tokens (Equal
  "Brown FOX" matches "the quick brown fox" under word tokenization, a field-tokenized value only whole); a
  property without ``indexFilterable`` or a value of the wrong type ("valueNumber" on an int) fails.
- Order: a fetch without filters and the ``after`` cursor are in uuid order (the objects bucket), a filtered
  fetch is in write order (doc ids; an update gets a new one); equal BM25 scores or distances go to the lower
  doc id, equal fused scores to the higher BM25 score, then the lower uuid. Limit 0
  means QUERY_DEFAULTS_LIMIT (25, as in our docker-compose); offset + limit above QUERY_MAXIMUM_RESULTS
  (10,000) fails; a batch delete removes at most QUERY_MAXIMUM_RESULTS objects.

Known differences: searches are exact (no HNSW approximation); BM25 over several properties adds up
per-property scores (Weaviate uses BM25F); hybrid sub-searches rank every candidate (Weaviate caps each); no
persistence, replication, auth (an API key is accepted and ignored), modules (vectorizers, generative,
rerankers), references, nested objects, sorting, group-by, autocut, property aggregations or legacy (unnamed)
vectors. Those fail loudly: HTTP 501 / gRPC UNIMPLEMENTED naming the feature, also recorded in
:attr:`FakeWeaviate.unimplemented` so a test can assert that nothing was left out.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import json
import math
import re
import socket
import struct
import threading
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import json_format
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    base_search_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)

__all__ = ["FakeWeaviate", "WeaviateFakeError", "running_weaviate"]

VERSION = "1.33.4"
GRPC_MAX_MESSAGE_SIZE = 104_858_000
STOPWORDS_EN = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)  # Weaviate's "en" preset (adapters/repos/db/inverted/stopwords/presets.go)
_TENANT_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")
_CLASS_NAME = re.compile(r"^[A-Z][_0-9A-Za-z]{0,254}$")
_PRIMITIVE_TYPES = {"text", "int", "number", "boolean"}
_TOKENIZATIONS = {"word", "lowercase", "whitespace", "field"}
_HNSW_DEFAULTS: dict[str, Any] = {
    "skip": False,
    "cleanupIntervalSeconds": 300,
    "maxConnections": 32,
    "efConstruction": 128,
    "ef": -1,
    "dynamicEfMin": 100,
    "dynamicEfMax": 500,
    "dynamicEfFactor": 8,
    "vectorCacheMaxObjects": 1_000_000_000_000,
    "flatSearchCutoff": 40000,
    "distance": "cosine",
    "filterStrategy": "sweeping",
    "pq": {"enabled": False},
    "bq": {"enabled": False},
    "sq": {"enabled": False},
    "multivector": {"enabled": False},
}
_FLAT_DEFAULTS: dict[str, Any] = {"distance": "cosine", "vectorCacheMaxObjects": 1_000_000_000_000}
_Filters = base_pb2.Filters
_UNSUPPORTED_SEARCH_FIELDS = (
    *("group_by", "generative", "rerank", "boost"),
    *("near_object", "near_text", "near_image", "near_audio", "near_video", "near_depth", "near_thermal"),
    "near_imu",
)


class WeaviateFakeError(Exception):
    """An error the fake reports the way the server would: an HTTP status and a gRPC status code."""

    def __init__(self, message: str, *, status: int = 422, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class _Unimplemented(WeaviateFakeError):
    def __init__(self, feature: str) -> None:
        super().__init__(
            f"fake Weaviate does not implement {feature}",
            status=501,
            code=grpc.StatusCode.UNIMPLEMENTED,
        )


def _not_found(message: str) -> WeaviateFakeError:
    return WeaviateFakeError(message, status=404, code=grpc.StatusCode.NOT_FOUND)


# ------------------------------------------------------------------------------------------------------------
# The data model


@dataclass
class _Object:
    uuid: str
    properties: dict[str, Any]
    vectors: dict[str, list[float]]
    created_ms: int
    updated_ms: int
    doc_id: int
    _atoms: dict[str, tuple[list[Any], frozenset[Any]]] = field(default_factory=dict, repr=False)


@dataclass
class _Shard:
    """A tenant (or the one shard of a single-tenant collection): its objects in doc-id (write) order."""

    objects: dict[str, _Object] = field(default_factory=dict)
    # The length of each named vector index, fixed by the first vector stored in it.
    vector_dims: dict[str, int] = field(default_factory=dict)
    # The filterable properties' inverted index (property -> term -> uuids): finds Equal matches fast.
    index: dict[str, dict[Any, set[str]]] = field(default_factory=dict)

    def add(self, obj: _Object, coll: _Collection) -> None:
        self.objects[obj.uuid] = obj
        for prop in coll.schema["properties"]:
            if prop["indexFilterable"]:
                postings = self.index.setdefault(prop["name"], {})
                for term in _atoms(obj, prop)[1]:
                    postings.setdefault(term, set()).add(obj.uuid)

    def remove(self, object_id: str, coll: _Collection) -> _Object | None:
        obj = self.objects.pop(object_id, None)
        if obj is not None:
            for prop in coll.schema["properties"]:
                postings = self.index.get(prop["name"], {})
                for term in _atoms(obj, prop)[1] if prop["indexFilterable"] else ():
                    postings.get(term, set()).discard(object_id)
        return obj


class _Collection:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.name: str = schema["class"]
        self.multi_tenant: bool = schema["multiTenancyConfig"]["enabled"]
        self.shards: dict[str, _Shard] = {} if self.multi_tenant else {"": _Shard()}

    def prop(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.schema["properties"] if p["name"] == name), None)

    @property
    def vector_configs(self) -> dict[str, Any]:
        return self.schema.get("vectorConfig", {})

    def shard(self, tenant: str, *, create: bool = False) -> _Shard:
        """The tenant's shard, with the server's errors for a missing or superfluous tenant."""
        if not self.multi_tenant:
            if tenant:
                raise WeaviateFakeError(
                    f"class {self.name} has multi-tenancy disabled, but request was with tenant"
                )
            return self.shards[""]
        if not tenant:
            raise WeaviateFakeError(
                f"class {self.name} has multi-tenancy enabled, but request was without tenant"
            )
        if tenant not in self.shards:
            if create and self.schema["multiTenancyConfig"].get("autoTenantCreation"):
                self.shards[tenant] = _Shard()
            else:
                raise _not_found(f'tenant not found: "{tenant}"')
        return self.shards[tenant]


# ------------------------------------------------------------------------------------------------------------
# Schema: what the server stores and returns for a class


def _capitalize(name: str) -> str:
    return name[:1].upper() + name[1:]


def _normalize_property(raw: dict[str, Any], class_name: str) -> dict[str, Any]:
    name = raw.get("name") or ""
    if not re.match(r"^[_A-Za-z][_0-9A-Za-z]{0,230}$", name):
        raise WeaviateFakeError(f"'{name}' is not a valid property name")
    data_type = raw.get("dataType") or []
    if len(data_type) != 1 or data_type[0].removesuffix("[]") not in _PRIMITIVE_TYPES:
        raise _Unimplemented(f"property data type {data_type} (property {name!r} of {class_name})")
    if raw.get("nestedProperties"):
        raise _Unimplemented("nested properties")
    is_text = data_type[0].removesuffix("[]") == "text"
    searchable = raw.get("indexSearchable")
    if searchable and not is_text:
        raise WeaviateFakeError(
            f"`indexSearchable` is not allowed for other than text/text[] data types (property '{name}')"
        )
    prop: dict[str, Any] = {
        "name": name,
        "dataType": list(data_type),
        "indexFilterable": raw.get("indexFilterable", True) is not False,
        "indexSearchable": is_text and searchable is not False,
        "indexRangeFilters": bool(raw.get("indexRangeFilters", False)),
    }
    if raw.get("description"):
        prop["description"] = raw["description"]
    if is_text:
        tokenization = raw.get("tokenization") or "word"
        if tokenization not in _TOKENIZATIONS:
            raise _Unimplemented(f"tokenization {tokenization!r}")
        prop["tokenization"] = tokenization
    elif raw.get("tokenization"):
        raise WeaviateFakeError(
            f"tokenization is not allowed for data type {data_type[0]} (property '{name}')"
        )
    return prop


def _normalize_class(raw: dict[str, Any]) -> dict[str, Any]:
    """The class as the server stores it: validated, with every default filled in."""
    name = _capitalize(raw.get("class") or "")
    if not _CLASS_NAME.match(name):
        raise WeaviateFakeError(f"'{name}' is not a valid class name")
    for key in ("moduleConfig", "generative", "reranker"):
        if raw.get(key):
            raise _Unimplemented(f"modules ({key} of class {name})")
    if raw.get("vectorizer", "none") != "none" or "vectorIndexConfig" in raw or "vectorIndexType" in raw:
        raise _Unimplemented("legacy (unnamed) vectors: use named vectors (vector_config)")
    if raw.get("objectTtlConfig", {}).get("enabled"):
        raise _Unimplemented("object TTL")
    properties = [_normalize_property(p, name) for p in raw.get("properties") or []]
    names = [p["name"] for p in properties]
    if len(set(names)) != len(names):
        raise WeaviateFakeError(f"class {name} has duplicate property names")
    inverted = raw.get("invertedIndexConfig") or {}
    stopwords = inverted.get("stopwords") or {}
    if stopwords.get("preset", "en") not in ("en", "none"):
        raise WeaviateFakeError(f"stopwords preset {stopwords.get('preset')!r} is not supported")
    mt = raw.get("multiTenancyConfig") or {}
    vectors: dict[str, Any] = {}
    for vector_name, config in (raw.get("vectorConfig") or {}).items():
        vectorizer = config.get("vectorizer") or {"none": {}}
        if list(vectorizer) != ["none"]:
            raise _Unimplemented(f"vectorizer modules ({list(vectorizer)} for named vector {vector_name!r})")
        index_type = config.get("vectorIndexType") or "hnsw"
        if index_type not in ("hnsw", "flat"):
            raise _Unimplemented(f"vector index type {index_type!r}")
        index_config = {**(_HNSW_DEFAULTS if index_type == "hnsw" else _FLAT_DEFAULTS)}
        index_config.update(config.get("vectorIndexConfig") or {})
        if index_config["distance"] not in ("cosine", "dot", "l2-squared"):
            raise _Unimplemented(f"distance metric {index_config['distance']!r}")
        vectors[vector_name] = {
            "vectorizer": {"none": {}},
            "vectorIndexType": index_type,
            "vectorIndexConfig": copy.deepcopy(index_config),
        }
    schema: dict[str, Any] = {
        "class": name,
        "properties": properties,
        "invertedIndexConfig": {
            "bm25": {"b": 0.75, "k1": 1.2, **(inverted.get("bm25") or {})},
            "cleanupIntervalSeconds": inverted.get("cleanupIntervalSeconds", 60),
            "stopwords": {
                "preset": stopwords.get("preset", "en"),
                "additions": stopwords.get("additions"),
                "removals": stopwords.get("removals"),
            },
            "usingBlockMaxWAND": True,
        },
        "multiTenancyConfig": {
            "enabled": bool(mt.get("enabled", False)),
            "autoTenantCreation": bool(mt.get("autoTenantCreation", False)),
            "autoTenantActivation": bool(mt.get("autoTenantActivation", False)),
        },
        "replicationConfig": {
            "factor": 1,
            "asyncEnabled": False,
            "deletionStrategy": "NoAutomatedResolution",
        },
        "shardingConfig": {  # a multi-tenant class has one shard per tenant instead
            "virtualPerPhysical": 0 if mt.get("enabled") else 128,
            "desiredCount": 0 if mt.get("enabled") else 1,
            "actualCount": 0 if mt.get("enabled") else 1,
            "desiredVirtualCount": 0 if mt.get("enabled") else 128,
            "actualVirtualCount": 0 if mt.get("enabled") else 128,
            "key": "_id",
            "strategy": "hash",
            "function": "murmur3",
        },
        "vectorConfig": vectors,
    }
    if raw.get("description"):
        schema["description"] = raw["description"]
    if not vectors:
        del schema["vectorConfig"]
        schema["vectorizer"] = "none"
    return schema


# ------------------------------------------------------------------------------------------------------------
# Values: tokenization and the atoms that filters compare


def _tokenize(text: str, tokenization: str) -> list[str]:
    if tokenization == "word":
        return re.findall(r"[^\W_]+", text.lower())
    if tokenization == "lowercase":
        return text.lower().split()
    if tokenization == "whitespace":
        return text.split()
    return [text.strip()] if text.strip() else []  # field


def _atoms(obj: _Object, prop: dict[str, Any]) -> tuple[list[Any], frozenset[Any]]:
    """The values the inverted index holds for a property of an object (tokens for text), cached."""
    name = prop["name"]
    cached = obj._atoms.get(name)
    if cached is None:
        value = obj.properties.get(name)
        values = [] if value is None else value if isinstance(value, list) else [value]
        if prop["dataType"][0].startswith("text"):
            values = [token for text in values for token in _tokenize(text, prop["tokenization"])]
        cached = obj._atoms[name] = (values, frozenset(values))
    return cached


def _coerce(prop: dict[str, Any], value: Any, class_name: str) -> Any:
    """A property value from a batch, checked and converted to the property's data type."""
    data_type, name = prop["dataType"][0], prop["name"]
    if data_type.endswith("[]"):
        if not isinstance(value, list):
            raise WeaviateFakeError(
                f"invalid {data_type} property '{name}' on class '{class_name}': not a list"
            )
        element = {**prop, "dataType": [data_type[:-2]]}
        return [_coerce(element, v, class_name) for v in value]
    if data_type == "text" and isinstance(value, str):
        return value
    if data_type == "boolean" and isinstance(value, bool):
        return value
    if data_type in ("int", "number") and isinstance(value, int | float) and not isinstance(value, bool):
        if data_type == "number":
            return float(value)
        if float(value).is_integer():
            return int(value)
        raise WeaviateFakeError(
            f"invalid integer property '{name}' on class '{class_name}': requires integer, "
            f"the given value is '{value}'"
        )
    kind = {str: "string", bool: "bool", int: "float64", float: "float64"}.get(
        type(value), type(value).__name__
    )
    raise WeaviateFakeError(
        f"invalid {data_type} property '{name}' on class '{class_name}': not a {data_type}, but {kind}"
    )


def _infer_type(value: Any) -> str | None:
    """The auto-schema's data type for a value of a property the class does not have yet."""
    scalar = value[0] if isinstance(value, list) and value else value
    if isinstance(scalar, bool):
        base = "boolean"
    elif isinstance(scalar, str):
        base = "text"
    elif isinstance(scalar, int):  # only typed int arrays: plain numbers arrive as doubles in a Struct
        base = "int"
    elif isinstance(scalar, float):
        base = "number"  # the server's AUTOSCHEMA_DEFAULT_NUMBER
    else:
        return None
    return base + "[]" if isinstance(value, list) else base


# ------------------------------------------------------------------------------------------------------------
# Filters


_OP = _Filters.Operator


def _filter_value(f: base_pb2.Filters) -> tuple[str, Any]:
    kind = f.WhichOneof("test_value")
    if kind is None:
        raise WeaviateFakeError("filter has no value")
    value = getattr(f, kind)
    if kind.endswith("_array"):
        return kind, list(value.values)
    if kind == "value_geo":
        raise _Unimplemented("geo filters")
    return kind, value


_KINDS_FOR_TYPE = {
    "text": ("value_text", "value_text_array"),
    "int": ("value_int", "value_int_array"),
    "number": ("value_number", "value_number_array"),
    "boolean": ("value_boolean", "value_boolean_array"),
}


def _compile_filter(f: base_pb2.Filters, coll: _Collection) -> Callable[[_Object], bool]:
    """A predicate on objects for a gRPC filter, with the server's validation."""
    op = f.operator
    if op in (_OP.OPERATOR_AND, _OP.OPERATOR_OR, _OP.OPERATOR_NOT):
        subs = [_compile_filter(sub, coll) for sub in f.filters]
        if not subs:
            raise WeaviateFakeError("And/Or/Not filter without operands")
        if op == _OP.OPERATOR_AND:
            return lambda obj: all(sub(obj) for sub in subs)
        if op == _OP.OPERATOR_OR:
            return lambda obj: any(sub(obj) for sub in subs)
        if len(subs) != 1:
            raise WeaviateFakeError("Not filter needs exactly one operand")
        return lambda obj: not subs[0](obj)

    if f.HasField("target"):
        if f.target.WhichOneof("target") != "property":
            raise _Unimplemented("filters on references")
        name = f.target.property
    elif len(f.on) == 1:
        name = f.on[0]
    else:
        raise _Unimplemented(f"filter path {list(f.on)}")
    kind, value = _filter_value(f)
    op_name = _OP.Name(op)

    if name == "_id":
        if kind not in ("value_text", "value_text_array"):
            raise WeaviateFakeError(f'data type filter cannot use "{kind}" on type "uuid"')
        wanted = {str(uuid_lib.UUID(v)) for v in (value if isinstance(value, list) else [value])}
        if op in (_OP.OPERATOR_EQUAL, _OP.OPERATOR_CONTAINS_ANY):
            return lambda obj: obj.uuid in wanted
        if op in (_OP.OPERATOR_NOT_EQUAL, _OP.OPERATOR_CONTAINS_NONE):
            return lambda obj: obj.uuid not in wanted
        raise _Unimplemented(f"{op_name} on _id")
    if name.startswith("_"):
        raise _Unimplemented(f"filters on {name}")

    prop = coll.prop(name)
    if prop is None:
        raise WeaviateFakeError(
            f"no such prop with name '{name}' found in class '{coll.name}' in the schema. "
            "Check your schema files for which properties in this class are available"
        )
    if not prop["indexFilterable"]:
        raise WeaviateFakeError(
            f"Filtering by property '{name}' requires inverted index. "
            f"Is `indexFilterable` option of property '{name}' enabled? Set it to `true` or leave empty"
        )
    base_type = prop["dataType"][0].removesuffix("[]")
    if kind not in _KINDS_FOR_TYPE[base_type]:
        field_name = "".join(part.capitalize() for part in kind.split("_"))
        raise WeaviateFakeError(
            f'data type filter cannot use "{field_name[0].lower()}{field_name[1:]}" on type "{base_type}"'
        )
    is_text = base_type == "text"

    # Each value is the set of index terms an object must all have to match it (tokens for text).
    values = value if isinstance(value, list) else [value]
    wanted = [frozenset(_tokenize(v, prop["tokenization"])) if is_text else frozenset([v]) for v in values]
    wanted = [terms for terms in wanted if terms]  # a value without any token matches nothing

    def matches(obj: _Object) -> Iterator[bool]:
        atoms = _atoms(obj, prop)[1]
        return (terms <= atoms for terms in wanted)

    if op in (_OP.OPERATOR_EQUAL, _OP.OPERATOR_NOT_EQUAL) and isinstance(value, list):
        raise WeaviateFakeError(f"{op_name} needs a single value, not an array")
    if op in (_OP.OPERATOR_EQUAL, _OP.OPERATOR_CONTAINS_ANY):
        return lambda obj: any(matches(obj))
    if op in (_OP.OPERATOR_NOT_EQUAL, _OP.OPERATOR_CONTAINS_NONE):
        return lambda obj: not any(matches(obj))
    if op == _OP.OPERATOR_CONTAINS_ALL:
        return lambda obj: bool(wanted) and all(matches(obj))
    if op == _OP.OPERATOR_LIKE:
        if not is_text:
            raise WeaviateFakeError(f"Like filter is only supported on text properties, not {base_type}")
        pattern = value if prop["tokenization"] == "field" else value.lower()
        return lambda obj: any(fnmatch.fnmatchcase(atom, pattern) for atom in _atoms(obj, prop)[0])
    compare: dict[int, Callable[[Any, Any], bool]] = {
        _OP.OPERATOR_GREATER_THAN: lambda a, b: a > b,
        _OP.OPERATOR_GREATER_THAN_EQUAL: lambda a, b: a >= b,
        _OP.OPERATOR_LESS_THAN: lambda a, b: a < b,
        _OP.OPERATOR_LESS_THAN_EQUAL: lambda a, b: a <= b,
    }
    if op in compare:
        if isinstance(value, list):
            raise WeaviateFakeError(f"{op_name} needs a single value, not an array")
        test = compare[op]
        return lambda obj: any(test(atom, value) for atom in _atoms(obj, prop)[0])
    raise _Unimplemented(f"filter operator {op_name}")


def _narrow(f: base_pb2.Filters, coll: _Collection, shard: _Shard) -> set[str] | None:
    """The uuids an Equal filter (or an And containing one) can only match, from the shard's inverted index;
    None when the index cannot tell. The compiled filter still decides."""
    if f.operator == _OP.OPERATOR_AND:
        found = [ids for sub in f.filters if (ids := _narrow(sub, coll, shard)) is not None]
        return set.intersection(*found) if found else None
    kind = f.WhichOneof("test_value")
    if f.operator != _OP.OPERATOR_EQUAL or f.target.WhichOneof("target") != "property" or kind is None:
        return None
    prop = coll.prop(f.target.property)
    if (
        prop is None
        or not prop["indexFilterable"]
        or kind not in _KINDS_FOR_TYPE[prop["dataType"][0].removesuffix("[]")]
    ):
        return None
    value = getattr(f, kind)
    terms = _tokenize(value, prop["tokenization"]) if kind == "value_text" else [value]
    postings = shard.index.get(prop["name"], {})
    return set.intersection(*(postings.get(term, set()) for term in terms)) if terms else set()


# ------------------------------------------------------------------------------------------------------------
# Vectors and scores


def _unpack_vectors(vectors: Iterable[base_pb2.Vectors], what: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for vec in vectors:
        if vec.type == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32:
            raise _Unimplemented(f"multi-vectors ({what})")
        out[vec.name] = list(struct.unpack(f"<{len(vec.vector_bytes) // 4}f", vec.vector_bytes))
    return out


def _floats(raw: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _distance(metric: str, a: list[float], b: list[float]) -> float:
    if metric == "dot":
        return -sum(x * y for x, y in zip(a, b, strict=True))
    if metric == "l2-squared":
        return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return 1.0 - (sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0)


@dataclass
class _Hit:
    obj: _Object
    score: float | None = None
    distance: float | None = None
    explain: str = ""


def _bm25(
    coll: _Collection, shard: _Shard, query: str, properties: list[str], candidates: list[_Object]
) -> list[_Hit]:
    """Weaviate's BM25 (OR of the query terms) over `candidates`, best first; only objects matching a term."""
    config = coll.schema["invertedIndexConfig"]
    k1, b = float(config["bm25"]["k1"]), float(config["bm25"]["b"])
    stopwords = set(STOPWORDS_EN if config["stopwords"]["preset"] == "en" else ())
    stopwords |= set(config["stopwords"].get("additions") or ())
    stopwords -= set(config["stopwords"].get("removals") or ())
    if not properties:
        properties = [p["name"] for p in coll.schema["properties"] if p["indexSearchable"]]
    scores: dict[str, float] = {}
    for spec in properties:
        name, _, boost = spec.partition("^")
        prop = coll.prop(name)
        if prop is None:
            raise WeaviateFakeError(f"property {name!r} not found in class {coll.name}")
        if not prop["indexSearchable"]:
            raise WeaviateFakeError(
                f"Property '{name}' is not indexed as searchable (indexSearchable is false), "
                "so it cannot be used in a keyword (bm25) search"
            )
        weight = float(boost) if boost else 1.0
        query_terms = _tokenize(query, prop["tokenization"])
        if prop["tokenization"] == "word":
            query_terms = [t for t in query_terms if t not in stopwords]
        if not query_terms:
            continue
        # Corpus statistics come from the whole shard, as in the inverted index; filters only narrow results.
        lengths = [len(_atoms(obj, prop)[0]) for obj in shard.objects.values() if name in obj.properties]
        if not lengths:
            continue
        average = sum(lengths) / len(lengths) or 1.0
        total = len(shard.objects)
        doc_freq = {
            t: sum(1 for o in shard.objects.values() if t in _atoms(o, prop)[1]) for t in set(query_terms)
        }
        for obj in candidates:
            tokens, token_set = _atoms(obj, prop)
            if not token_set.intersection(query_terms):
                continue
            score = 0.0
            for term in query_terms:  # a repeated query term counts again, like Weaviate's duplicate boost
                freq = tokens.count(term)
                if freq:
                    idf = math.log(1 + (total - doc_freq[term] + 0.5) / (doc_freq[term] + 0.5))
                    score += idf * freq / (freq + k1 * (1 - b + b * len(tokens) / average))
            scores[obj.uuid] = scores.get(obj.uuid, 0.0) + weight * score
    hits = [_Hit(obj, score=scores[obj.uuid]) for obj in candidates if obj.uuid in scores]
    hits.sort(key=lambda h: (-(h.score or 0.0), h.obj.doc_id))
    return hits


def _fuse(keyword: list[_Hit], vector: list[_Hit], alpha: float, fusion: int) -> list[_Hit]:
    """Weaviate's hybrid fusion of the BM25 and vector result lists (usecases/traverser/hybrid)."""
    fused: dict[str, _Hit] = {}
    secondary: dict[str, float] = {}
    sets = [(keyword, 1.0 - alpha, "keyword,bm25"), (vector, alpha, "vector,nearVector")]
    for hits, weight, name in sets:
        if fusion == base_search_pb2.Hybrid.FUSION_TYPE_RANKED:
            contributions = [weight / (rank + 60) for rank in range(len(hits))]
        else:
            raw = [h.score if h.distance is None else 1.0 - h.distance for h in hits]
            low, high = (min(raw), max(raw)) if raw else (0.0, 0.0)
            contributions = [weight * ((r - low) / (high - low) if high != low else 1.0) for r in raw]
        for hit, contribution in zip(hits, contributions, strict=True):
            entry = fused.setdefault(hit.obj.uuid, _Hit(hit.obj, score=0.0))
            entry.score = (entry.score or 0.0) + contribution
            entry.explain += f"(Result Set {name}) Document {hit.obj.uuid} contributed {contribution}\n"
            secondary[hit.obj.uuid] = max(secondary.get(hit.obj.uuid, -math.inf), hit.score or 0.0)
    out = list(fused.values())
    out.sort(key=lambda h: (-(h.score or 0.0), -secondary[h.obj.uuid], h.obj.uuid))
    return out


# ------------------------------------------------------------------------------------------------------------
# Reply building


def _value(value: Any, data_type: str) -> properties_pb2.Value:
    """A stored property value as the reply carries it (lists packed as the client's 1.25+ API expects)."""
    Value, ListValue = properties_pb2.Value, properties_pb2.ListValue  # noqa: N806
    if data_type == "text[]":
        return Value(list_value=ListValue(text_values=properties_pb2.TextValues(values=value)))
    if data_type == "int[]":
        packed = struct.pack(f"<{len(value)}q", *value)
        return Value(list_value=ListValue(int_values=properties_pb2.IntValues(values=packed)))
    if data_type == "number[]":
        packed = struct.pack(f"<{len(value)}d", *value)
        return Value(list_value=ListValue(number_values=properties_pb2.NumberValues(values=packed)))
    if data_type == "boolean[]":
        return Value(list_value=ListValue(bool_values=properties_pb2.BooleanValues(values=value)))
    if data_type == "boolean":
        return Value(bool_value=value)
    if data_type == "int":
        return Value(int_value=value)
    if data_type == "number":
        return Value(number_value=value)
    return Value(text_value=value)


# ------------------------------------------------------------------------------------------------------------
# The server


class FakeWeaviate:
    """In-memory Weaviate state plus its REST and gRPC servers (see the module docstring)."""

    def __init__(self, *, query_defaults_limit: int = 25, query_maximum_results: int = 10_000) -> None:
        self.query_defaults_limit = query_defaults_limit
        self.query_maximum_results = query_maximum_results
        self.collections: dict[str, _Collection] = {}
        self.unimplemented: list[str] = []  # every request the fake refused as not implemented
        self.http_url = ""
        self.grpc_port = 0
        self._lock = threading.RLock()
        self._next_doc_id = 0
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None

    # ---- lifecycle

    def start(self) -> None:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _make_http_handler(self))
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="FakeWeaviate:http", daemon=True
        )
        self._http_thread.start()
        self.http_url = f"http://127.0.0.1:{self._http.server_address[1]}"

        options = [
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_SIZE),
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_SIZE),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self), self._grpc)
        health = grpc.unary_unary_rpc_method_handler(
            lambda _request, _context: health_weaviate_pb2.WeaviateHealthCheckResponse(
                status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
            ),
            request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
            response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
        )
        self._grpc.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": health}),)
        )
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None

    # ---- helpers shared by REST and gRPC

    def collection(self, name: str) -> _Collection:
        coll = self.collections.get(_capitalize(name))
        if coll is None:
            raise _not_found(f"could not find class {name} in schema")
        return coll

    def record_unimplemented(self, what: str) -> None:
        with self._lock:
            self.unimplemented.append(what)

    def _candidates(
        self, shard: _Shard, filters: base_pb2.Filters | None, coll: _Collection
    ) -> list[_Object]:
        if filters is None:
            return list(shard.objects.values())
        match = _compile_filter(filters, coll)
        narrowed = _narrow(filters, coll, shard)
        objects: Iterable[_Object] = shard.objects.values()
        if narrowed is not None:
            objects = sorted((shard.objects[object_id] for object_id in narrowed), key=lambda o: o.doc_id)
        return [obj for obj in objects if match(obj)]

    # ---- REST: schema and tenants

    def create_class(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise WeaviateFakeError("class must be a JSON object")
        schema = _normalize_class(body)
        with self._lock:
            if schema["class"] in self.collections:
                raise WeaviateFakeError(f"class name {schema['class']} already exists")
            self.collections[schema["class"]] = _Collection(schema)
        return copy.deepcopy(schema)

    def add_property(self, class_name: str, body: Any) -> dict[str, Any]:
        with self._lock:
            coll = self.collection(class_name)
            prop = _normalize_property(body if isinstance(body, dict) else {}, coll.name)
            if coll.prop(prop["name"]) is not None:
                raise WeaviateFakeError(f"class {coll.name}: property {prop['name']!r} already exists")
            coll.schema["properties"].append(prop)
            return copy.deepcopy(prop)

    def add_tenants(self, class_name: str, body: Any) -> list[dict[str, Any]]:
        with self._lock:
            coll = self.collection(class_name)
            if not coll.multi_tenant:
                raise WeaviateFakeError(f"multi-tenancy is not enabled for class {coll.name!r}")
            tenants = body if isinstance(body, list) else []
            for tenant in tenants:
                name = tenant.get("name", "") if isinstance(tenant, dict) else ""
                if not _TENANT_NAME.match(name):
                    raise WeaviateFakeError(f"tenant name {name!r} is not valid")
                if tenant.get("activityStatus", "ACTIVE") not in ("ACTIVE", "HOT"):
                    raise _Unimplemented(f"tenant activity status {tenant['activityStatus']}")
            for tenant in tenants:
                coll.shards.setdefault(tenant["name"], _Shard())  # adding an existing tenant is a no-op
            return [{"name": t["name"], "activityStatus": "ACTIVE"} for t in tenants]

    def tenants(self, class_name: str) -> list[str]:
        with self._lock:
            coll = self.collection(class_name)
            if not coll.multi_tenant:
                raise WeaviateFakeError(f"multi-tenancy is not enabled for class {coll.name!r}")
            return list(coll.shards)

    def remove_tenants(self, class_name: str, body: Any) -> None:
        with self._lock:
            coll = self.collection(class_name)
            if not coll.multi_tenant:
                raise WeaviateFakeError(f"multi-tenancy is not enabled for class {coll.name!r}")
            for name in body if isinstance(body, list) else []:
                coll.shards.pop(name, None)

    # ---- gRPC: objects

    def batch_objects(self, request: batch_pb2.BatchObjectsRequest) -> batch_pb2.BatchObjectsReply:
        started = time.perf_counter()
        errors: list[batch_pb2.BatchObjectsReply.BatchError] = []
        with self._lock:
            for index, obj in enumerate(request.objects):
                try:
                    self._put(obj)
                except _Unimplemented as exc:
                    self.unimplemented.append(exc.message)
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index, error=exc.message))
                except WeaviateFakeError as exc:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index, error=exc.message))
        return batch_pb2.BatchObjectsReply(took=time.perf_counter() - started, errors=errors)

    def _put(self, obj: batch_pb2.BatchObject) -> None:
        coll = self.collection(obj.collection)
        try:
            object_id = str(uuid_lib.UUID(obj.uuid))
        except ValueError:
            raise WeaviateFakeError(f"invalid UUID {obj.uuid!r}") from None
        if len(obj.vector) or len(obj.vector_bytes):
            raise _Unimplemented("legacy (unnamed) vectors: send named vectors")
        vectors = _unpack_vectors(obj.vectors, "batch object")
        properties = self._properties(coll, obj.properties) if obj.HasField("properties") else {}
        shard = coll.shard(obj.tenant, create=True)
        for name, vector in vectors.items():
            if name not in coll.vector_configs:
                raise WeaviateFakeError(
                    f"collection {coll.name} does not have named vector {name!r} configured"
                )
            if not vector:
                raise WeaviateFakeError(f"empty vector for target vector {name!r}")
            want = shard.vector_dims.get(name)
            if want is not None and want != len(vector):
                raise WeaviateFakeError(
                    f"new node has a vector with length {len(vector)}. "
                    f"Existing nodes have vectors with length {want}"
                )
        for name, vector in vectors.items():
            shard.vector_dims.setdefault(name, len(vector))
        now = int(time.time() * 1000)
        old = shard.remove(object_id, coll)  # an update gets a new doc id: it moves to the end
        self._next_doc_id += 1
        new = _Object(
            uuid=object_id,
            properties=properties,
            vectors=vectors,
            created_ms=old.created_ms if old else now,
            updated_ms=now,
            doc_id=self._next_doc_id,
        )
        shard.add(new, coll)

    def _properties(self, coll: _Collection, props: batch_pb2.BatchObject.Properties) -> dict[str, Any]:
        if props.single_target_ref_props or props.multi_target_ref_props:
            raise _Unimplemented("references")
        if props.object_properties or props.object_array_properties:
            raise _Unimplemented("object properties")
        raw: dict[str, Any] = json_format.MessageToDict(props.non_ref_properties)
        for arr in props.text_array_properties:
            raw[arr.prop_name] = list(arr.values)
        for arr in props.int_array_properties:
            raw[arr.prop_name] = list(arr.values)
        for arr in props.boolean_array_properties:
            raw[arr.prop_name] = list(arr.values)
        for arr in props.number_array_properties:
            raw[arr.prop_name] = (
                list(struct.unpack(f"<{len(arr.values_bytes) // 8}d", arr.values_bytes))
                if arr.values_bytes
                else list(arr.values)
            )
        empty = set(props.empty_list_props)
        out: dict[str, Any] = {}
        for name, value in raw.items():
            if value is None:
                continue
            prop = coll.prop(name)
            if prop is None:  # auto-schema
                data_type = _infer_type(value)
                if data_type is None:
                    raise _Unimplemented(f"auto-schema for the value of property {name!r}")
                prop = _normalize_property({"name": name, "dataType": [data_type]}, coll.name)
                coll.schema["properties"].append(prop)
            out[name] = _coerce(prop, value, coll.name)
        for name in empty:
            out[name] = []
        return out

    def batch_delete(self, request: batch_delete_pb2.BatchDeleteRequest) -> batch_delete_pb2.BatchDeleteReply:
        started = time.perf_counter()
        with self._lock:
            coll = self.collection(request.collection)
            shard = coll.shard(request.tenant if request.HasField("tenant") else "")
            if not request.HasField("filters"):
                raise WeaviateFakeError("batch delete needs filters")
            matched = self._candidates(shard, request.filters, coll)[: self.query_maximum_results]
            if not request.dry_run:
                for obj in matched:
                    shard.remove(obj.uuid, coll)
        return batch_delete_pb2.BatchDeleteReply(
            took=time.perf_counter() - started,
            matches=len(matched),
            successful=len(matched),
            failed=0,
            objects=[
                batch_delete_pb2.BatchDeleteObject(uuid=uuid_lib.UUID(o.uuid).bytes, successful=True)
                for o in matched
            ]
            if request.verbose
            else [],
        )

    # ---- gRPC: queries

    def search(self, req: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply:
        started = time.perf_counter()
        for name in _UNSUPPORTED_SEARCH_FIELDS:
            if req.HasField(name):
                raise _Unimplemented(f"search with {name}")
        if req.sort_by:
            raise _Unimplemented("sorting")
        if req.autocut:
            raise _Unimplemented("autocut")
        searches = [n for n in ("bm25_search", "near_vector", "hybrid_search") if req.HasField(n)]
        if len(searches) > 1:
            raise WeaviateFakeError(f"only one search type at a time, got {searches}")
        limit = req.limit or self.query_defaults_limit
        if req.offset + limit > self.query_maximum_results:
            raise WeaviateFakeError("query maximum results exceeded")
        with self._lock:
            coll = self.collection(req.collection)
            shard = coll.shard(req.tenant)
            filters = req.filters if req.HasField("filters") else None
            if req.after:
                if filters is not None or searches or req.offset:
                    raise WeaviateFakeError(
                        "cursor api: invalid 'after' parameter: other params cannot be set"
                    )
                after = str(uuid_lib.UUID(req.after))
                ordered = sorted((o for o in shard.objects.values() if o.uuid > after), key=lambda o: o.uuid)
                hits = [_Hit(o) for o in ordered[:limit]]
            elif not searches:
                candidates = self._candidates(shard, filters, coll)
                if filters is None:
                    candidates.sort(key=lambda o: o.uuid)  # the objects bucket is keyed by uuid
                hits = [_Hit(o) for o in candidates[req.offset : req.offset + limit]]
            else:
                candidates = self._candidates(shard, filters, coll)
                if req.HasField("bm25_search"):
                    bm25 = req.bm25_search
                    if bm25.HasField("search_operator"):
                        raise _Unimplemented("bm25 search operators")
                    hits = _bm25(coll, shard, bm25.query, list(bm25.properties), candidates)
                elif req.HasField("near_vector"):
                    hits = self._near_vector(coll, req.near_vector, candidates)
                else:
                    hits = self._hybrid(coll, shard, req.hybrid_search, candidates)
                hits = hits[req.offset : req.offset + limit]
            results = [self._result(coll, req, hit) for hit in hits]
        return search_get_pb2.SearchReply(took=time.perf_counter() - started, results=results)

    def _target(
        self, coll: _Collection, targets: base_search_pb2.Targets | None, names: Iterable[str]
    ) -> str:
        wanted = (
            list(targets.target_vectors) if targets is not None and targets.target_vectors else list(names)
        )
        if targets is not None and targets.weights_for_targets:
            raise _Unimplemented("multi-target vector weights")
        if not wanted:
            if len(coll.vector_configs) != 1:
                raise WeaviateFakeError(
                    f"class {coll.name} has multiple vectors, but no target vectors were provided"
                    if coll.vector_configs
                    else f"class {coll.name} has no vectors"
                )
            wanted = list(coll.vector_configs)
        if len(set(wanted)) > 1:
            raise _Unimplemented("multi-target vector search")
        if wanted[0] not in coll.vector_configs:
            raise WeaviateFakeError(
                f"class {coll.name} does not have named vector {wanted[0]} configured. "
                f"Available named vectors {list(coll.vector_configs)}"
            )
        return wanted[0]

    def _query_vector(self, nv: base_search_pb2.NearVector) -> tuple[list[float], list[str]]:
        """The one query vector of a NearVector message and the target names it carries."""
        if nv.vector_per_target:
            raise _Unimplemented("vector_per_target")
        if nv.vector_for_targets:
            if len(nv.vector_for_targets) != 1:
                raise _Unimplemented("multi-target vector search")
            vft = nv.vector_for_targets[0]
            vectors = list(_unpack_vectors(vft.vectors, "near vector").values())
            return (vectors[0] if vectors else _floats(vft.vector_bytes)), [vft.name]
        if nv.vectors:
            vectors = list(_unpack_vectors(nv.vectors, "near vector").values())
            if len(vectors) != 1:
                raise _Unimplemented("several query vectors")
            return vectors[0], []
        if nv.vector_bytes:
            return _floats(nv.vector_bytes), []
        return list(nv.vector), []

    def _near_vector(
        self, coll: _Collection, nv: base_search_pb2.NearVector, candidates: list[_Object]
    ) -> list[_Hit]:
        if nv.HasField("selection"):
            raise _Unimplemented("diversity selection (MMR)")
        if nv.HasField("distance") and nv.HasField("certainty"):
            raise WeaviateFakeError("near_vector: cannot provide distance and certainty")
        query, names = self._query_vector(nv)
        target = self._target(
            coll, nv.targets if nv.HasField("targets") else None, [*nv.target_vectors, *names]
        )
        hits = self._vector_hits(coll, target, query, candidates)
        if nv.HasField("distance"):
            hits = [h for h in hits if (h.distance or 0.0) <= nv.distance]
        if nv.HasField("certainty"):
            hits = [h for h in hits if 1 - (h.distance or 0.0) / 2 >= nv.certainty]
        return hits

    def _vector_hits(
        self, coll: _Collection, target: str, query: list[float], candidates: list[_Object]
    ) -> list[_Hit]:
        if not query:
            raise WeaviateFakeError("empty query vector")
        metric = coll.vector_configs[target]["vectorIndexConfig"]["distance"]
        hits = []
        for obj in candidates:
            vector = obj.vectors.get(target)
            if vector is None:
                continue
            if len(vector) != len(query):
                raise WeaviateFakeError(
                    f"vector search: knn search: distance between entrypoint and query node: "
                    f"vector lengths don't match: {len(query)} vs {len(vector)}"
                )
            hits.append(_Hit(obj, distance=_distance(metric, query, vector)))
        hits.sort(key=lambda h: (h.distance, h.obj.doc_id))
        return hits

    def _hybrid(
        self, coll: _Collection, shard: _Shard, hs: base_search_pb2.Hybrid, candidates: list[_Object]
    ) -> list[_Hit]:
        if hs.HasField("selection"):
            raise _Unimplemented("diversity selection (MMR)")
        if hs.HasField("bm25_search_operator"):
            raise _Unimplemented("bm25 search operators")
        if hs.HasField("near_text"):
            raise _Unimplemented("hybrid with near_text (needs a vectorizer module)")
        if hs.WhichOneof("threshold") is not None:
            raise _Unimplemented("hybrid max_vector_distance")
        if hs.use_alpha_param:  # clients for servers >= 1.36.6; ours send `alpha` (0 is a value there)
            alpha = hs.alpha_param if hs.HasField("alpha_param") else 0.75
        else:
            alpha = hs.alpha
        names: list[str] = list(hs.target_vectors)
        if hs.HasField("near_vector"):
            if hs.near_vector.HasField("distance") or hs.near_vector.HasField("certainty"):
                raise _Unimplemented("hybrid vector distance/certainty thresholds")
            query, extra = self._query_vector(hs.near_vector)
            names += extra
        elif hs.vectors:
            vectors = list(_unpack_vectors(hs.vectors, "hybrid vector").values())
            if len(vectors) != 1:
                raise _Unimplemented("several query vectors")
            query = vectors[0]
        elif hs.vector_bytes:
            query = _floats(hs.vector_bytes)
        else:
            query = list(hs.vector)
        keyword = _bm25(coll, shard, hs.query, list(hs.properties), candidates) if alpha < 1 else []
        vector: list[_Hit] = []
        if alpha > 0:
            if not query:
                raise WeaviateFakeError(
                    f"hybrid search with alpha {alpha} needs a vector: class {coll.name} has no vectorizer"
                )
            target = self._target(coll, hs.targets if hs.HasField("targets") else None, names)
            vector = self._vector_hits(coll, target, query, candidates)
        fusion = hs.fusion_type or base_search_pb2.Hybrid.FUSION_TYPE_RELATIVE_SCORE
        return _fuse(keyword, vector, alpha, fusion)

    def _result(
        self, coll: _Collection, req: search_get_pb2.SearchRequest, hit: _Hit
    ) -> search_get_pb2.SearchResult:
        obj = hit.obj
        returned = coll.schema["properties"]  # all of them when the request names none
        if req.HasField("properties") and not req.properties.return_all_nonref_properties:
            if req.properties.ref_properties or req.properties.object_properties:
                raise _Unimplemented("returning references or nested object properties")
            returned = []
            for name in req.properties.non_ref_properties:
                prop = coll.prop(name)
                if prop is None:
                    raise WeaviateFakeError(f"could not find property {name!r} in class {coll.name}")
                returned.append(prop)
        fields = {
            p["name"]: _value(obj.properties[p["name"]], p["dataType"][0])
            for p in returned
            if p["name"] in obj.properties
        }
        meta = search_get_pb2.MetadataResult(id=obj.uuid, id_as_bytes=uuid_lib.UUID(obj.uuid).bytes)
        if req.HasField("metadata"):
            md = req.metadata
            wanted_vectors = list(obj.vectors) if md.vector else [n for n in md.vectors if n in obj.vectors]
            for name in wanted_vectors:
                vector = obj.vectors[name]
                meta.vectors.append(
                    base_pb2.Vectors(
                        name=name,
                        vector_bytes=struct.pack(f"<{len(vector)}f", *vector),
                        type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
                    )
                )
            if md.creation_time_unix:
                meta.creation_time_unix, meta.creation_time_unix_present = obj.created_ms, True
            if md.last_update_time_unix:
                meta.last_update_time_unix, meta.last_update_time_unix_present = obj.updated_ms, True
            if md.distance and hit.distance is not None:
                meta.distance, meta.distance_present = hit.distance, True
            if md.certainty and hit.distance is not None:
                meta.certainty, meta.certainty_present = 1 - hit.distance / 2, True
            if md.score and hit.score is not None:
                meta.score, meta.score_present = hit.score, True
            if md.explain_score and hit.score is not None:
                meta.explain_score = hit.explain or f"BM25F score {hit.score}"
                meta.explain_score_present = True
        return search_get_pb2.SearchResult(
            properties=search_get_pb2.PropertiesResult(
                non_ref_props=properties_pb2.Properties(fields=fields), target_collection=coll.name
            ),
            metadata=meta,
        )

    def aggregate(self, req: aggregate_pb2.AggregateRequest) -> aggregate_pb2.AggregateReply:
        started = time.perf_counter()
        if req.aggregations:
            raise _Unimplemented("property aggregations (only total_count is faked)")
        if req.HasField("group_by") or req.WhichOneof("search") is not None:
            raise _Unimplemented("aggregate with group_by or a search")
        with self._lock:
            coll = self.collection(req.collection)
            shard = coll.shard(req.tenant)
            count = len(self._candidates(shard, req.filters if req.HasField("filters") else None, coll))
        Single = aggregate_pb2.AggregateReply.Single  # noqa: N806
        return aggregate_pb2.AggregateReply(
            took=time.perf_counter() - started,
            single_result=Single(objects_count=count) if req.objects_count else Single(),
        )

    def tenants_get(self, req: tenants_pb2.TenantsGetRequest) -> tenants_pb2.TenantsGetReply:
        names = self.tenants(req.collection)
        if req.HasField("names"):
            names = [n for n in req.names.values if n in names]
        return tenants_pb2.TenantsGetReply(
            tenants=[
                tenants_pb2.Tenant(name=n, activity_status=tenants_pb2.TENANT_ACTIVITY_STATUS_ACTIVE)
                for n in names
            ]
        )


# ------------------------------------------------------------------------------------------------------------
# Transports


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, fake: FakeWeaviate) -> None:
        self.fake = fake

    def _call(self, handler: Callable[[Any], Any], request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(request)
        except WeaviateFakeError as exc:
            if isinstance(exc, _Unimplemented):
                self.fake.record_unimplemented(exc.message)
            context.abort(exc.code, exc.message)

    def Search(self, request, context):  # noqa: N802 - the generated servicer's names
        return self._call(self.fake.search, request, context)

    def BatchObjects(self, request, context):  # noqa: N802
        return self._call(self.fake.batch_objects, request, context)

    def BatchDelete(self, request, context):  # noqa: N802
        return self._call(self.fake.batch_delete, request, context)

    def Aggregate(self, request, context):  # noqa: N802
        return self._call(self.fake.aggregate, request, context)

    def TenantsGet(self, request, context):  # noqa: N802
        return self._call(self.fake.tenants_get, request, context)

    def BatchReferences(self, request, context):  # noqa: N802
        self.fake.record_unimplemented("gRPC BatchReferences")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake Weaviate does not implement BatchReferences")

    def BatchStream(self, request_iterator, context):  # noqa: N802
        self.fake.record_unimplemented("gRPC BatchStream")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake Weaviate does not implement BatchStream")


_Route = tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]


def _routes(fake: FakeWeaviate) -> list[_Route]:
    def schema_get(name: str, _body: Any) -> tuple[int, Any]:
        with fake._lock:
            coll = fake.collections.get(_capitalize(name))
            return (200, copy.deepcopy(coll.schema)) if coll else (404, None)

    def schema_delete(name: str, _body: Any) -> tuple[int, Any]:
        with fake._lock:
            fake.collections.pop(_capitalize(name), None)
        return 200, None

    def schema_list(_body: Any) -> tuple[int, Any]:
        with fake._lock:
            return 200, {"classes": [copy.deepcopy(c.schema) for c in fake.collections.values()]}

    def tenant_get(name: str, tenant: str, _body: Any) -> tuple[int, Any]:
        if tenant not in fake.tenants(name):
            return 404, None
        return 200, {"name": tenant, "activityStatus": "ACTIVE"}

    def tenants_list(name: str, _body: Any) -> tuple[int, Any]:
        return 200, [{"name": t, "activityStatus": "ACTIVE"} for t in fake.tenants(name)]

    def tenants_remove(name: str, body: Any) -> tuple[int, Any]:
        fake.remove_tenants(name, body)
        return 200, None

    meta = {
        "hostname": "http://[::]:8080",
        "modules": {},
        "version": VERSION,
        "grpcMaxMessageSize": GRPC_MAX_MESSAGE_SIZE,
    }
    return [
        ("GET", re.compile(r"/v1/\.well-known/(ready|live)"), lambda _kind, _body: (200, None)),
        ("GET", re.compile(r"/v1/\.well-known/openid-configuration"), lambda _body: (404, None)),
        ("GET", re.compile(r"/v1/meta"), lambda _body: (200, meta)),
        ("GET", re.compile(r"/v1/schema"), schema_list),
        ("POST", re.compile(r"/v1/schema"), lambda body: (200, fake.create_class(body))),
        ("GET", re.compile(r"/v1/schema/(\w+)"), schema_get),
        ("DELETE", re.compile(r"/v1/schema/(\w+)"), schema_delete),
        (
            "POST",
            re.compile(r"/v1/schema/(\w+)/properties"),
            lambda n, body: (200, fake.add_property(n, body)),
        ),
        ("GET", re.compile(r"/v1/schema/(\w+)/tenants"), tenants_list),
        ("POST", re.compile(r"/v1/schema/(\w+)/tenants"), lambda n, body: (200, fake.add_tenants(n, body))),
        ("DELETE", re.compile(r"/v1/schema/(\w+)/tenants"), tenants_remove),
        ("GET", re.compile(r"/v1/schema/(\w+)/tenants/([^/]+)"), tenant_get),
    ]


def _make_http_handler(fake: FakeWeaviate) -> type[BaseHTTPRequestHandler]:
    routes = _routes(fake)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without NODELAY, Nagle + delayed ACK stall replies.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def _handle(self, method: str) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
                lookup = "GET" if method == "HEAD" else method
                for route_method, pattern, handler in routes:
                    match = pattern.fullmatch(path)
                    if match and route_method == lookup:
                        status, payload = handler(*match.groups(), body)
                        break
                else:
                    message = f"fake Weaviate does not implement {method} {path}"
                    fake.record_unimplemented(message)
                    status, payload = 501, {"error": [{"message": message}]}
            except WeaviateFakeError as exc:
                if isinstance(exc, _Unimplemented):
                    fake.record_unimplemented(exc.message)
                status, payload = exc.status, {"error": [{"message": exc.message}]}
            except json.JSONDecodeError as exc:
                status, payload = 400, {"error": [{"message": f"invalid JSON body: {exc}"}]}
            except Exception as exc:  # noqa: BLE001 - a bug in the fake: make it visible to the client
                status, payload = 500, {"error": [{"message": f"fake Weaviate failed: {exc!r}"}]}
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_HEAD(self) -> None:  # noqa: N802
            self._handle("HEAD")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

        def do_PATCH(self) -> None:  # noqa: N802
            self._handle("PATCH")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

    return Handler


@contextlib.contextmanager
def running_weaviate(**options: Any) -> Iterator[FakeWeaviate]:
    """Start REST + gRPC servers on free 127.0.0.1 ports in background threads; stop them on exit.

    `options` go to :class:`FakeWeaviate` (query_defaults_limit, query_maximum_results)."""
    fake = FakeWeaviate(**options)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
