"""An invented arXiv corpus for the fake arXiv server: plausible, deterministic, not real.

`default_corpus()` writes a few hundred papers on five topics. Titles and
abstracts (1000-1500 characters) are assembled from each topic's vocabulary,
so a search for a topic's terms finds that topic's papers, with a few
cross-topic mentions to make ranking non-trivial. Papers have 1-12 authors
(some with non-ASCII names), cross-lists, versions 1-3, dates from 2015 to
2026, and some DOIs, journal references and comments. No real arXiv record is
copied: the recorded feeds under /work/shared/data stay out of the repository.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["TOPIC_KEYS", "CorpusPaper", "default_corpus"]


@dataclass(frozen=True)
class CorpusPaper:
    """One paper the fake can return, in its latest version."""

    arxiv_id: str
    """Without version: "2403.01234" or "hep-th/9901001"."""
    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    """The primary category first, then cross-lists."""
    published: datetime
    """When version 1 was submitted (UTC)."""
    updated: datetime | None = None
    """When this version was submitted; None: the same as `published`."""
    version: int = 1
    doi: str | None = None
    journal_ref: str | None = None
    comment: str | None = None
    topic: str = ""
    """The generator's topic key ("rag", "gnn", ...); "" for hand-made papers."""

    @property
    def last_updated(self) -> datetime:
        return self.updated or self.published

    @property
    def versioned_id(self) -> str:
        return f"{self.arxiv_id}v{self.version}"


@dataclass(frozen=True)
class _Topic:
    """The vocabulary papers on one topic are written from."""

    key: str
    names: tuple[str, ...]
    """The topic's own names; the first is the canonical one."""
    subjects: tuple[str, ...]
    methods: tuple[str, ...]
    challenges: tuple[str, ...]
    unit: str
    """What a method of the field selects and combines: passages, syndromes, trajectories."""
    benchmarks: tuple[str, ...]
    metrics: tuple[str, ...]
    conditions: tuple[str, ...]
    scales: tuple[str, ...]
    primary_categories: tuple[str, ...]
    cross_lists: tuple[str, ...]
    system_prefixes: tuple[str, ...]
    """Beginnings of invented system names ("Retri" + "Fuse")."""
    venues: tuple[str, ...]
    doi_prefix: str


_TOPICS = (
    _Topic(
        key="rag",
        names=(
            "retrieval-augmented generation",
            "RAG",
            "retrieval-augmented language models",
        ),
        subjects=(
            "open-domain question answering",
            "multi-hop reasoning",
            "fact verification",
            "long-form answer generation",
            "conversational search",
            "biomedical question answering",
        ),
        methods=(
            "dense passage retrieval",
            "cross-encoder re-ranking",
            "query rewriting",
            "hybrid sparse-dense retrieval",
            "knowledge graph grounding",
            "contrastive retriever training",
            "iterative retrieval",
            "context compression",
        ),
        challenges=(
            "retrieved passages are often noisy or only partially relevant",
            "models still hallucinate facts absent from the retrieved context",
            "long contexts dilute the evidence that matters",
            "the retriever and the generator are trained in isolation",
        ),
        unit="passages",
        benchmarks=(
            "Natural Questions",
            "HotpotQA",
            "TriviaQA",
            "FEVER",
            "MS MARCO",
            "2WikiMultiHopQA",
        ),
        metrics=("exact match", "answer F1", "citation precision", "faithfulness"),
        conditions=("adversarially injected passages", "stale corpora", "noisy user queries"),
        scales=("a corpus of 100 million passages", "contexts of 128k tokens"),
        primary_categories=("cs.CL", "cs.IR"),
        cross_lists=("cs.AI", "cs.LG", "cs.IR", "cs.CL"),
        system_prefixes=("Retri", "Ground", "Evi", "Recall"),
        venues=(
            "Proceedings of ACL 2024",
            "Proceedings of EMNLP 2023",
            "Transactions of the Association for Computational Linguistics",
            "Proceedings of SIGIR 2025",
        ),
        doi_prefix="10.18653/v1/acl",
    ),
    _Topic(
        key="gnn",
        names=("graph neural networks", "GNNs", "message passing neural networks"),
        subjects=(
            "node classification",
            "link prediction",
            "molecular property prediction",
            "traffic forecasting",
            "recommendation on user-item graphs",
            "combinatorial optimisation on graphs",
        ),
        methods=(
            "graph attention",
            "spectral graph convolution",
            "Laplacian positional encodings",
            "graph transformers",
            "hierarchical pooling",
            "subgraph sampling",
            "equivariant message passing",
            "graph contrastive learning",
        ),
        challenges=(
            "deep models suffer from over-smoothing and over-squashing",
            "heterophilous graphs violate the homophily assumption",
            "expressivity is bounded by the Weisfeiler-Leman test",
            "training does not scale to graphs with billions of edges",
        ),
        unit="neighbourhoods",
        benchmarks=("Cora", "PubMed", "ogbn-arxiv", "ogbn-products", "ZINC", "QM9"),
        metrics=("accuracy", "ROC-AUC", "mean absolute error", "Hits@50"),
        conditions=("heterophily", "adversarial edge perturbations", "graph distribution shift"),
        scales=("graphs with a billion edges", "networks of hundreds of layers"),
        primary_categories=("cs.LG",),
        cross_lists=("stat.ML", "cs.SI", "cs.AI"),
        system_prefixes=("Graph", "Node", "Edge", "Mesh"),
        venues=(
            "Proceedings of ICML 2024",
            "Proceedings of NeurIPS 2023",
            "IEEE Transactions on Neural Networks and Learning Systems",
            "Proceedings of KDD 2025",
        ),
        doi_prefix="10.1109/TNNLS",
    ),
    _Topic(
        key="qec",
        names=(
            "quantum error correction",
            "QEC",
            "fault-tolerant quantum computation",
        ),
        subjects=(
            "surface code decoding",
            "logical qubit memories",
            "magic state distillation",
            "lattice surgery",
            "bosonic cat qubits",
            "quantum low-density parity-check codes",
        ),
        methods=(
            "minimum-weight perfect matching",
            "belief propagation with ordered statistics decoding",
            "neural network decoders",
            "union-find decoding",
            "tensor network decoding",
            "concatenated codes",
            "flag qubits",
        ),
        challenges=(
            "physical error rates remain close to the threshold",
            "correlated and leakage errors break standard noise models",
            "real-time decoding must keep pace with syndrome extraction",
            "the qubit overhead of the surface code is prohibitive",
        ),
        unit="syndromes",
        benchmarks=(
            "circuit-level depolarising noise",
            "biased Pauli noise",
            "the rotated surface code",
            "bivariate bicycle codes",
            "hypergraph product codes",
        ),
        metrics=("logical error rate", "threshold", "decoding latency"),
        conditions=("biased noise", "leakage", "time-correlated errors"),
        scales=("code distances up to 25", "thousands of physical qubits"),
        primary_categories=("quant-ph",),
        cross_lists=("cs.IT", "cond-mat.str-el", "cs.ET"),
        system_prefixes=("Qu", "Surf", "Logi", "Syn"),
        venues=("Phys. Rev. X", "Quantum", "Phys. Rev. Lett.", "PRX Quantum"),
        doi_prefix="10.1103/PhysRevX",
    ),
    _Topic(
        key="protein",
        names=(
            "protein folding",
            "protein structure prediction",
            "protein language models",
        ),
        subjects=(
            "de novo protein design",
            "antibody modelling",
            "protein-ligand docking",
            "enzyme engineering",
            "intrinsically disordered regions",
            "multimer assembly",
        ),
        methods=(
            "multiple sequence alignment",
            "SE(3)-equivariant transformers",
            "diffusion models over backbone frames",
            "coevolutionary contact maps",
            "inverse folding",
            "molecular dynamics refinement",
            "geometric deep learning",
        ),
        challenges=(
            "alignments are unavailable for orphan proteins",
            "predicted structures are overconfident in flexible regions",
            "conformational ensembles are collapsed to a single state",
            "experimental structures cover a small part of sequence space",
        ),
        unit="structural templates",
        benchmarks=("CASP15", "CAMEO", "the PDB", "SAbDab", "PoseBusters"),
        metrics=("TM-score", "lDDT", "GDT-TS", "RMSD"),
        conditions=("low sequence identity", "missing coevolutionary signal", "point mutations"),
        scales=("the full UniRef50 database", "complexes of thousands of residues"),
        primary_categories=("q-bio.BM",),
        cross_lists=("cs.LG", "physics.bio-ph", "q-bio.QM"),
        system_prefixes=("Fold", "Prot", "Helix", "Amino"),
        venues=(
            "Nature Methods",
            "Bioinformatics",
            "Proteins: Structure, Function, and Bioinformatics",
            "Proceedings of ICLR 2025",
        ),
        doi_prefix="10.1093/bioinformatics",
    ),
    _Topic(
        key="rl",
        names=("reinforcement learning", "RL", "deep reinforcement learning"),
        subjects=(
            "robotic manipulation",
            "continuous control",
            "offline policy learning",
            "multi-agent coordination",
            "autonomous driving",
            "reasoning with language models",
        ),
        methods=(
            "proximal policy optimisation",
            "soft actor-critic",
            "model-based planning",
            "reward shaping",
            "conservative Q-learning",
            "intrinsic motivation",
            "hierarchical policies",
            "world models",
        ),
        challenges=(
            "sparse rewards make exploration sample-inefficient",
            "policies overfit to their training environments",
            "offline data covers a narrow part of the state space",
            "value estimates are unstable under function approximation",
        ),
        unit="trajectories",
        benchmarks=(
            "MuJoCo locomotion",
            "Atari 100k",
            "D4RL",
            "Meta-World",
            "Procgen",
            "the DeepMind Control Suite",
        ),
        metrics=("average return", "success rate", "sample efficiency"),
        conditions=("sensor noise", "changing dynamics", "sparse rewards"),
        scales=("billions of environment steps", "hundreds of agents"),
        primary_categories=("cs.LG", "cs.AI"),
        cross_lists=("cs.RO", "stat.ML", "cs.MA"),
        system_prefixes=("Act", "Policy", "Explor", "Plan"),
        venues=(
            "Proceedings of ICLR 2024",
            "Journal of Machine Learning Research",
            "Proceedings of CoRL 2023",
            "IEEE Robotics and Automation Letters",
        ),
        doi_prefix="10.1109/LRA",
    ),
)

_TITLE_TEMPLATES = (
    "{system}: {method} for {subject}",
    "Towards robust {name} with {method}",
    "Improving {name} for {subject} with {method}",
    "On the {property} of {name}",
    "A survey of {name}: methods, benchmarks and open problems",
    "{system}: scalable {name} via {method}",
    "Rethinking {method} in {name}",
    "When does {method} help {name}? An empirical study",
    "{name} under {condition}: {system} and beyond",
)
_PROPERTIES = ("robustness", "sample efficiency", "generalisation", "calibration", "limits")
_SYSTEM_SUFFIXES = ("Fuse", "Net", "Former", "Mix", "Lens", "Bridge", "Flow", "Scope", "Weave")
_ASSUMPTIONS = (
    "clean and abundant supervision",
    "a fixed and fully observed input distribution",
    "access to large labelled datasets",
    "that errors are independent of one another",
    "an unlimited computational budget at inference time",
)
_BENEFITS = (
    "mistakes made early in the pipeline can be corrected later",
    "the model adapts to distribution shift without retraining",
    "computation is spent only where it is needed",
    "uncertainty is propagated from end to end",
)
_GUARANTEES = (
    "converges to a stationary point at the optimal rate",
    "is never less accurate than its strongest component",
    "is invariant to the order of its inputs",
    "incurs only a logarithmic overhead in the problem size",
)
_COSTS = ("inference latency", "memory usage", "training time", "the number of model calls")
_HARD_CASES = (
    "rare, long-tail inputs",
    "inputs far from the training distribution",
    "cases with conflicting evidence",
    "the largest problem instances",
)
_FIRST_NAMES = (
    "Wei", "Maria", "James", "Aisha", "Hiroshi", "Elena", "Rahul", "Sofia", "David", "Mei",
    "Oluwaseun", "Anna", "Carlos", "Yuki", "Fatima", "Lukas", "Priya", "Ahmed", "Julia", "Chen",
    "Ingrid", "Tomás", "Zoë", "Björn", "Søren", "José", "Łucja", "Çağan", "François", "Jürgen",
)  # fmt: skip
_LAST_NAMES = (
    "Zhang", "Smith", "Garcia", "Kumar", "Tanaka", "Ivanova", "Okafor", "Rossi", "Nguyen", "Kim",
    "Johnson", "Haddad", "Silva", "Novak", "Andersen", "Brown", "Wang", "Dubois", "Sato", "Patel",
    "Müller", "Fernández", "Ødegård", "Dvořák", "Lefèvre", "Peña", "Ó Briain", "Weiß",
    "Yılmaz",  # noqa: RUF001 (the Turkish dotless i is meant)
)  # fmt: skip
# Words a title keeps in lower case.
_SMALL_WORDS = frozenset(
    ("a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "via", "with")
)  # fmt: skip
_CORPUS_START = datetime(2015, 1, 1, tzinfo=UTC)
_CORPUS_END = datetime(2026, 10, 31, tzinfo=UTC)

TOPIC_KEYS = tuple(topic.key for topic in _TOPICS)


def default_corpus(papers_per_topic: int = 60, seed: int = 2025) -> tuple[CorpusPaper, ...]:
    """Invent `papers_per_topic` papers on each of five topics, the same ones for the same seed.

    Topics (`CorpusPaper.topic`): "rag" (retrieval-augmented generation), "gnn"
    (graph neural networks), "qec" (quantum error correction), "protein"
    (protein folding), "rl" (reinforcement learning). Papers are ordered by
    first submission, and their ids follow arXiv's YYMM.NNNNN scheme for that date.
    """
    rng = random.Random(seed)
    drafts: list[CorpusPaper] = []
    titles: set[str] = set()
    for topic in _TOPICS:
        written = 0
        while written < papers_per_topic:
            draft = _invent_paper(rng, topic)
            if draft.title in titles:
                continue  # arXiv titles are practically unique; searches rely on it
            titles.add(draft.title)
            drafts.append(draft)
            written += 1
    drafts.sort(key=lambda draft: draft.published)
    papers = []
    next_number: dict[str, int] = {}
    for draft in drafts:
        month = draft.published.strftime("%y%m")
        number = next_number.get(month, rng.randint(100, 2000)) + rng.randint(1, 400)
        next_number[month] = number
        papers.append(dataclasses.replace(draft, arxiv_id=f"{month}.{number:05d}"))
    return tuple(papers)


def _invent_paper(rng: random.Random, topic: _Topic) -> CorpusPaper:
    system = rng.choice(topic.system_prefixes) + rng.choice(_SYSTEM_SUFFIXES)
    method, method2 = rng.sample(topic.methods, 2)
    subject, subject2 = rng.sample(topic.subjects, 2)
    title = _title_case(
        rng.choice(_TITLE_TEMPLATES).format(
            system=system,
            method=method,
            subject=subject,
            name=rng.choice(topic.names),
            property=rng.choice(_PROPERTIES),
            condition=rng.choice(topic.conditions),
        )
    )
    abstract = _invent_abstract(rng, topic, system, (method, method2), (subject, subject2))

    published = _CORPUS_START + (_CORPUS_END - _CORPUS_START) * rng.random()
    published = published.replace(microsecond=0)
    version = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
    updated = published
    for _ in range(version - 1):
        updated += timedelta(days=rng.randint(5, 200), seconds=rng.randint(0, 86399))
    cross_lists = rng.sample(topic.cross_lists, rng.randint(0, 2))
    primary = rng.choice(topic.primary_categories)
    categories = (primary, *(c for c in cross_lists if c != primary))
    year = published.year

    doi = journal_ref = None
    if rng.random() < 0.3:
        doi = f"{topic.doi_prefix}.{year}.{rng.randint(10, 99999):05d}"
    if rng.random() < 0.25:
        venue = rng.choice(topic.venues)
        page = rng.randint(1, 2000)
        journal_ref = (
            f"{venue}, pp. {page}-{page + rng.randint(8, 14)}"
            if venue.startswith("Proceedings")
            else f"{venue} {rng.randint(1, 120)}, {page} ({year + rng.randint(0, 1)})"
        )
    comment = rng.choice(
        (
            None,
            f"{rng.randint(8, 40)} pages, {rng.randint(2, 12)} figures",
            f"Accepted at {rng.choice(topic.venues)}",
            f"{rng.randint(8, 40)} pages; code and data available",
        )
    )
    return CorpusPaper(
        arxiv_id="",
        title=title,
        abstract=abstract,
        authors=tuple(_invent_author(rng) for _ in range(_author_count(rng))),
        categories=categories,
        published=published,
        updated=updated,
        version=version,
        doi=doi,
        journal_ref=journal_ref,
        comment=comment,
        topic=topic.key,
    )


def _invent_abstract(
    rng: random.Random,
    topic: _Topic,
    system: str,
    methods: tuple[str, str],
    subjects: tuple[str, str],
) -> str:
    """Five core sentences, then optional ones while the abstract stays within 1000-1500 chars."""
    name = rng.choice(topic.names)
    challenge, challenge2 = rng.sample(topic.challenges, 2)
    assumption = rng.choice(_ASSUMPTIONS)
    benefit = rng.choice(_BENEFITS)
    bench1, bench2, bench3 = rng.sample(topic.benchmarks, 3)
    metric, gain = rng.choice(topic.metrics), f"{rng.uniform(1.5, 25):.1f}%"
    cost, saving = rng.choice(_COSTS), f"{rng.randint(10, 70)}%"
    other_topic = rng.choice([t for t in _TOPICS if t is not topic])
    # One of several phrasings for each step of the usual abstract.
    core = [
        rng.choice(
            (
                f"Research on {name} has become central to {subjects[0]}, but {challenge}.",
                f"{_capitalise(subjects[0])} increasingly relies on {name}, yet {challenge}.",
                f"Despite rapid progress in {name}, {challenge}, which limits its use for "
                f"{subjects[0]}.",
            )
        ),
        rng.choice(
            (
                f"Existing approaches built on {methods[0]} typically assume {assumption}, "
                f"an assumption that rarely holds for {subjects[1]}.",
                f"Prior work based on {methods[0]} leaves a second problem open: {challenge2}.",
                f"Methods based on {methods[0]} assume {assumption} and degrade sharply on "
                f"{subjects[1]}, where {challenge2}.",
            )
        ),
        rng.choice(
            (
                f"In this work we introduce {system}, a framework for {topic.names[0]} that "
                f"couples {methods[0]} with {methods[1]} so that {benefit}.",
                f"We propose {system}, which combines {methods[0]} and {methods[1]} in a single "
                f"model for {topic.names[0]}, so that {benefit}.",
            )
        ),
        rng.choice(
            (
                f"{system} first builds a compact representation of the input with "
                f"{methods[0]}, then scores candidate {topic.unit} with a lightweight learned "
                f"critic, and finally aggregates the selected {topic.unit} into one prediction.",
                f"Concretely, {system} encodes candidate {topic.unit} with {methods[1]}, keeps "
                f"those a learned critic judges useful, and revises its prediction until the "
                f"critic's confidence stops improving.",
            )
        ),
        rng.choice(
            (
                f"Experiments on {bench1}, {bench2} and {bench3} show that {system} improves "
                f"{metric} by {gain} over strong baselines while reducing {cost} by {saving}.",
                f"On {bench1}, {bench2} and {bench3}, {system} raises {metric} by {gain} "
                f"relative to the strongest baseline and cuts {cost} by {saving}.",
            )
        ),
    ]
    optional = [
        f"We prove that, under mild assumptions, {system} {rng.choice(_GUARANTEES)}, "
        "and we characterise when this bound is tight.",
        f"Ablation studies attribute most of the gain to the {methods[1]} component, and an "
        f"error analysis shows that the remaining failures concentrate on "
        f"{rng.choice(_HARD_CASES)}.",
        f"We further show that {system} remains robust under {rng.choice(topic.conditions)} "
        f"and scales to {rng.choice(topic.scales)}.",
        f"Beyond {subjects[0]}, our findings suggest connections to "
        f"{rng.choice(other_topic.names[:1] + other_topic.names[2:])}, which we discuss as a "
        "direction for future work.",
        "Code, trained models and evaluation scripts are publicly available to support "
        "reproducibility.",
    ]
    rng.shuffle(optional)
    sentences = core
    for sentence in optional:
        if len(" ".join([*sentences, sentence])) <= 1500:
            sentences.append(sentence)
        if len(" ".join(sentences)) >= 1100:
            break
    return " ".join(sentences)


def _author_count(rng: random.Random) -> int:
    return rng.choices(range(1, 13), weights=(6, 10, 12, 12, 10, 8, 5, 3, 2, 2, 1, 1))[0]


def _invent_author(rng: random.Random) -> str:
    first = rng.choice(_FIRST_NAMES)
    middle = f" {rng.choice('ABCDEFGHJKLMNPRST')}." if rng.random() < 0.2 else ""
    return f"{first}{middle} {rng.choice(_LAST_NAMES)}"


def _title_case(text: str) -> str:
    words = text.split(" ")
    return " ".join(
        word if index and word in _SMALL_WORDS else _capitalise(word)
        for index, word in enumerate(words)
    )


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]
