"""Text embeddings for relevance ranking and for the Qdrant memory.

Three embedders share one small protocol:

- `tasks.onnx_embedder.OnnxEmbedder` ("EMBEDDINGS=local", the default): a
  sentence-embedding model (all-MiniLM-L6-v2) run in the worker with ONNX
  Runtime. It measures meaning: "translating questions into database queries"
  lands near a text-to-SQL abstract that shares none of its words.
- `OpenAIEmbedder` ("EMBEDDINGS=openai") calls any OpenAI-compatible
  `/embeddings` endpoint, one request per call.
- `HashingEmbedder` ("EMBEDDINGS=hashing", opt-in) needs no model and no
  network: feature hashing of words, word pairs and character trigrams. It is
  lexical, a second word-overlap score rather than a semantic one, and
  deterministic across processes and machines.

All return unit-length vectors, and each reports what a call cost
(`embed_with_usage`: tokens the model read) for the job's usage ledger.
Vectors of two embedders with different `name`s live in different spaces and
must never be compared or stored together.

The hashing embedder's words are those of `tasks.text_terms` (`WORD`,
`normalise`, `STOPWORDS`), found for a whole batch at once with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import openai
from numpy.typing import NDArray
from openai.types import CreateEmbeddingResponse

from tasks.errors import PermanentUpstreamError
from tasks.openai_errors import OPENAI_CALL_ERRORS, upstream_error
from tasks.text_terms import STOPWORDS, normalise


@dataclass(frozen=True)
class EmbeddingBatch:
    """The vectors of one embedding call and what it cost.

    `vectors` holds one unit-length vector per text, in the order of the texts;
    `tokens` counts the tokens the model read: the API's own usage figure for
    a remote model, the tokenizer's count for a local one, 0 for hashing.
    """

    vectors: list[list[float]]
    tokens: int


class Embedder(Protocol):
    """Turns texts into vectors whose dot product measures how alike two texts are."""

    @property
    def name(self) -> str:
        """Identifies the vector space; it goes into provenance and the Qdrant collection."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in the order of `texts`."""
        ...

    def embed_with_usage(self, texts: Sequence[str]) -> EmbeddingBatch:
        """As `embed`, with the tokens the call cost (for the job's usage ledger)."""
        ...


# --- The local embedder -------------------------------------------------------------

_UInt64s = NDArray[np.uint64]
_Floats = NDArray[np.float64]
_Indices = NDArray[np.intp]

# Each kind of feature is normalised on its own and then weighted, so that a
# long word's many trigrams do not drown the words themselves: the cosine of
# two texts is roughly a weighted mean of their word, pair and trigram overlap.
_WORD_WEIGHT: Final = 1.0
_PAIR_WEIGHT: Final = 0.5
_TRIGRAM_WEIGHT: Final = 1.0

# Odd 64-bit constants that put words and pairs in hash families of their own.
_WORD_SALT: Final = np.uint64(0x9E3779B97F4A7C15)
_PAIR_SALT: Final = np.uint64(0xC2B2AE3D27D4EB4F)
_SPACE: Final = ord(" ")
# Keys that tell one text's feature from another's: the text's row in the top
# 20 bits, the feature hash's top 44 bits below (so a call embeds at most 2**20
# texts, and two features of one text are confused with odds of about 2**-44).
_ROW_SHIFT: Final = np.uint64(44)
_HASH_SHIFT: Final = np.uint64(20)
_MAX_TEXTS: Final = 1 << 20


def _mix64(values: _UInt64s) -> _UInt64s:
    """SplitMix64's finaliser: a fast, well-spread 64-bit hash of 64-bit integers.

    Pure integer arithmetic (numpy arrays wrap modulo 2**64 silently), so every
    machine and every process computes the same value, unlike Python's
    `hash()`, which is salted per process.
    """
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


@dataclass(frozen=True)
class _Words:
    """Every word of a batch of texts, as parallel arrays with one entry per word."""

    rows: _Indices  # which text the word comes from
    hashes: _UInt64s  # the word's identity
    lengths: _Indices  # its number of characters, which is also its number of trigrams
    trigram_hashes: _UInt64s  # the trigrams of every word, word after word


def _ascii_alnum_table() -> NDArray[np.bool_]:
    table = np.array([chr(code).isalnum() for code in range(128)])
    table.flags.writeable = False  # a module constant: nobody may change it
    return table


_ASCII_ALNUM: Final = _ascii_alnum_table()


def _split_words(texts: Sequence[str]) -> _Words:
    """Find the words of all `texts` at once, with numpy rather than a regex per text.

    The texts are joined with spaces into one array of code points. Every
    character that is not a letter or digit (`str.isalnum`, as in
    `tasks.text_terms.WORD`) acts as a space, so each word is bounded by spaces and
    each of its characters is the middle of one trigram (" tr", "tra", …,
    "er " for "transformer"). Three code points (at most 21 bits each) pack
    losslessly into one 63-bit integer, which is then hashed.
    """
    normalised = [normalise(text) for text in texts]
    joined = " " + " ".join(normalised) + " "
    # surrogatepass: a lone surrogate (bad input, but possible) is a non-word character.
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")

    # str.isalnum for every code point: a table for ASCII (127 is DEL, not
    # alphanumeric, and stands in for the rest until they are looked up), and
    # one call per distinct other character (a batch holds a few hundred at most).
    is_word = _ASCII_ALNUM[np.minimum(codes, 127)]
    others = np.flatnonzero(codes > 127)
    if others.size:
        distinct, which = np.unique(codes[others], return_inverse=True)
        is_word[others] = np.array([chr(code).isalnum() for code in distinct.tolist()])[which]

    marked = np.where(is_word, codes, _SPACE).astype(np.uint64)
    centres = np.flatnonzero(is_word)
    packed = (
        (marked[centres - 1] << np.uint64(42))
        | (marked[centres] << np.uint64(21))
        | marked[centres + 1]
    )
    trigram_hashes = _mix64(packed)

    edges = np.diff(is_word.astype(np.int8))
    starts = np.flatnonzero(edges == 1) + 1
    lengths = np.flatnonzero(edges == -1) + 1 - starts
    if not starts.size:
        nothing = np.zeros(0, dtype=np.intp)
        return _Words(nothing, np.zeros(0, dtype=np.uint64), nothing, trigram_hashes)

    # A word's trigrams are consecutive; the hash of their sum identifies the
    # word (two words collide only if they share every trigram).
    first_trigrams = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    hashes = _mix64(np.add.reduceat(trigram_hashes, first_trigrams) ^ _WORD_SALT)

    text_starts = np.cumsum([1] + [len(text) + 1 for text in normalised[:-1]])
    rows = np.searchsorted(text_starts, starts, side="right") - 1
    return _Words(rows, hashes, lengths, trigram_hashes)


def _occurrence_shares(rows: _Indices, hashes: _UInt64s) -> _Floats:
    """What each occurrence of a feature contributes, so a text's `n` copies sum to `1 + ln n`.

    Sublinear term frequency: the tenth mention of a word says less than the
    first. Spreading the weight over the occurrences avoids collecting the
    distinct features first.
    """
    keys = (rows.astype(np.uint64) << _ROW_SHIFT) | (hashes >> _HASH_SHIFT)
    _, which, counts = np.unique(keys, return_inverse=True, return_counts=True)
    per_feature = (1.0 + np.log(counts)) / counts
    shares: _Floats = per_feature[which]
    return shares


def _hashed_rows(
    rows: _Indices, hashes: _UInt64s, weights: _Floats, n_rows: int, dimension: int
) -> _Floats:
    """Fold weighted feature hashes into an `n_rows` by `dimension` matrix of unit rows.

    The hash picks the bucket and the sign: features that collide in a bucket
    then cancel out on average instead of piling up.
    """
    # Bucket from the top 32 bits by multiply-and-shift (Lemire's "fast range"),
    # a few times quicker than `%` on 64-bit integers; sign from the lowest bit.
    buckets = (((hashes >> np.uint64(32)) * np.uint64(dimension)) >> np.uint64(32)).astype(np.intp)
    signs = 1.0 - 2.0 * (hashes & np.uint64(1)).astype(np.float64)
    flat = np.bincount(
        rows * dimension + buckets, weights=signs * weights, minlength=n_rows * dimension
    )
    return _unit_rows(flat.astype(np.float64, copy=False).reshape(n_rows, dimension))


def _unit_rows(matrix: _Floats) -> _Floats:
    """Scale each row to length 1; a zero row stays zero rather than becoming NaN."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: _Floats = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0.0)
    return unit


class HashingEmbedder:
    """Dependency-free, lexical embeddings by feature hashing ("EMBEDDINGS=hashing").

    Features of a text are its content words (words that are not STOPWORDS),
    each pair of neighbouring content words, and the character trigrams of each
    content word with its boundaries marked, so that "transformer" and
    "transformers" share almost all their trigrams and land close. Words and
    pairs weigh `1 + ln(count)`; a word's trigrams weigh what the word weighs.
    A text with no content words (blank, or only stopwords) gets the zero
    vector, whose similarity to anything is 0.

    It captures shared vocabulary, not meaning: "car" and "automobile" are
    unrelated to it. Use the ONNX model ("EMBEDDINGS=local") or
    `OpenAIEmbedder` for semantic similarity.
    """

    def __init__(self, dimension: int = 384) -> None:
        """`dimension` is the vector length; vectors of different lengths never mix."""
        if not 1 <= dimension <= 65536:
            raise ValueError(f"dimension must be between 1 and 65536, got {dimension}")
        self._dimension = dimension
        # Hashed with the very code that hashes the texts, so they match by construction.
        self._stopword_hashes = np.sort(_split_words(sorted(STOPWORDS)).hashes)

    @property
    def name(self) -> str:
        # "v1" names the feature recipe: bump it whenever a change to this
        # class, or to tasks.text_terms, would move vectors already stored.
        return f"local-hashing-v1-{self._dimension}"

    def embed_with_usage(self, texts: Sequence[str]) -> EmbeddingBatch:
        """As `embed`; hashing runs no model, so it costs no tokens."""
        return EmbeddingBatch(vectors=self.embed(texts), tokens=0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text; see the class docstring for the features used."""
        if not texts:
            return []
        if len(texts) > _MAX_TEXTS:
            raise ValueError(f"embed at most {_MAX_TEXTS} texts per call, got {len(texts)}")
        n_rows, dimension = len(texts), self._dimension
        words = _split_words(texts)

        # np.isin would sort both arrays; a binary search in the (sorted)
        # stopword hashes is several times quicker.
        stopwords = self._stopword_hashes
        found = np.minimum(np.searchsorted(stopwords, words.hashes), stopwords.size - 1)
        kept = stopwords[found] != words.hashes
        rows, hashes = words.rows[kept], words.hashes[kept]
        shares = _occurrence_shares(rows, hashes)
        word_part = _hashed_rows(rows, hashes, shares, n_rows, dimension)

        # Each word character is one trigram, so np.repeat by word length lines
        # words up with their trigrams.
        trigram_kept = np.repeat(kept, words.lengths)
        trigram_part = _hashed_rows(
            np.repeat(rows, words.lengths[kept]),
            words.trigram_hashes[trigram_kept],
            np.repeat(shares, words.lengths[kept]),
            n_rows,
            dimension,
        )

        # Ordered pairs of neighbouring content words of one text: (a, b) ≠ (b, a).
        same_text = rows[1:] == rows[:-1]
        pair_rows = rows[1:][same_text]
        pair_hashes = _mix64((hashes[:-1] * _PAIR_SALT) ^ hashes[1:])[same_text]
        pair_part = _hashed_rows(
            pair_rows,
            pair_hashes,
            _occurrence_shares(pair_rows, pair_hashes),
            n_rows,
            dimension,
        )

        vectors = _unit_rows(
            _WORD_WEIGHT * word_part + _TRIGRAM_WEIGHT * trigram_part + _PAIR_WEIGHT * pair_part
        )
        result: list[list[float]] = vectors.tolist()
        return result


# --- The OpenAI-compatible embedder -------------------------------------------------

_SERVICE: Final = "embeddings"


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible `/embeddings` endpoint ("EMBEDDINGS=openai").

    The client's own timeout applies to each request; build it with
    `max_retries=0` so that retries follow the task's backoff policy instead of
    sleeping inside the worker. Errors come out as `TransientUpstreamError`
    (worth retrying) or `PermanentUpstreamError`, both for service "embeddings".
    """

    def __init__(self, client: openai.OpenAI, model: str) -> None:
        """`client` is the worker's OpenAI client; `model` the embedding model to ask for."""
        self._client = client
        self._model = model

    @property
    def name(self) -> str:
        return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed all `texts` in one request; see `embed_with_usage`."""
        return self.embed_with_usage(texts).vectors

    def embed_with_usage(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Embed all `texts` in one request and return unit vectors in their order.

        `tokens` is the server's own `usage.prompt_tokens` (0 if it sends none).

        The API refuses empty input, so blank texts are not sent: they get the
        zero vector, as with the local embedder.

        Raises:
            ValueError: every text is blank (there is nothing to embed, and the
                vector length is unknown without a response).
            TransientUpstreamError, PermanentUpstreamError: the call failed, as
                `tasks.openai_errors` classifies it; a response of the wrong shape
                is permanent.
        """
        if not texts:
            return EmbeddingBatch(vectors=[], tokens=0)
        sent = [position for position, text in enumerate(texts) if text.strip()]
        if not sent:
            raise ValueError("every text is blank: there is nothing to embed")

        try:
            response = self._client.embeddings.create(
                model=self._model,
                input=[texts[position] for position in sent],
                # The SDK asks for base64 unless told otherwise, which several
                # OpenAI-compatible servers do not implement; floats work everywhere.
                encoding_format="float",
            )
        except OPENAI_CALL_ERRORS as exc:
            raise upstream_error(_SERVICE, exc) from exc

        vectors = _unit_vectors_in_order(response, expected=len(sent))
        dimension = vectors.shape[1]
        result = [[0.0] * dimension for _ in texts]
        for position, vector in zip(sent, vectors, strict=True):
            result[position] = vector.tolist()
        return EmbeddingBatch(vectors=result, tokens=_prompt_tokens(response))


def _prompt_tokens(response: CreateEmbeddingResponse) -> int:
    """The usage the server reported; some OpenAI-compatible servers send none."""
    usage = getattr(response, "usage", None)
    tokens = getattr(usage, "prompt_tokens", None)
    return tokens if isinstance(tokens, int) and tokens >= 0 else 0


def _unit_vectors_in_order(response: CreateEmbeddingResponse, expected: int) -> _Floats:
    """The response's embeddings as unit rows of a matrix, ordered by their `index`.

    The SDK does not validate response bodies against its types, so every field
    is checked here: a server that answers 200 with the wrong shape is a
    permanent error, not a crash further down the pipeline.
    """
    try:
        by_index = {item.index: item.embedding for item in response.data}
        if sorted(by_index) != list(range(expected)):
            raise ValueError(f"expected one embedding for each of {expected} inputs")
        matrix = np.array([by_index[index] for index in range(expected)], dtype=np.float64)
    except (AttributeError, TypeError, ValueError) as exc:
        raise PermanentUpstreamError(_SERVICE, f"malformed embeddings response: {exc}") from exc
    if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
        raise PermanentUpstreamError(
            _SERVICE, "malformed embeddings response: empty, ragged or non-finite vectors"
        )
    return _unit_rows(matrix)
