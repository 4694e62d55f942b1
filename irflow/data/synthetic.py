"""An embedded, deterministic, topical English test collection: passages, queries, graded qrels.

The demo (and the unit tests) must run with no network, so this module writes a small collection
from a seed instead of downloading one. It is pure Python and standard library: ``random.Random``
with string seeds (hashed with SHA-512, so the same stream on every machine and Python build),
no iteration over sets or over dicts with unstable order, and nothing heavy imported.

How the collection is built
---------------------------
* ``_TOPICS`` holds 27 topics (astronomy, cooking, football, medicine, gardening, banking, ...).
  Each has three subtopics, and each subtopic eight *facets*: things a passage can be about. A
  facet has three *document forms* (near-synonyms that passages use, the first one most often,
  e.g. "sourdough starter", "starter culture", "wild yeast levain") and two *query paraphrases*
  that no passage uses (e.g. "natural leavening"). Some words are shared across topics on
  purpose ("star" in astronomy, film and marine biology; "bank" in banking and rivers; "current"
  in rivers, electricity and oceans; "court" in tennis and law; "python" in programming and
  wildlife; "crane" in birds and construction; "plant" in gardening, electricity and
  construction), so lexical matching is sometimes misled.
* A passage belongs to one subtopic. It is mainly about one *primary* facet, seen from one of six
  *aspects* (history, learning, myths, mechanism, future, benefits): a sentence in that aspect's
  words, a follow-up, and a neutral sentence. It names ``secondary_facets`` other facets of its
  subtopic in passing (a sentence each), sometimes a facet of a sibling subtopic (``aside_rate``),
  and adds sentences about the subtopic and topic at large, filler, and now and then a digression
  naming another topic. Passages run from ``min_words`` to ``max_words`` words.
* A query is drawn from an *anchor* passage: it asks about the anchor's primary facet, usually
  from the anchor's aspect (``aspect_query_rate``), or names two of the anchor's facets
  (``two_facet_rate``). Each facet mention is a query paraphrase with probability
  ``paraphrase_rate`` (vocabulary mismatch: a semantic encoder helps) and otherwise a document
  form (lexical overlap: BM25 helps, most for passages that chose the same form). Queries often
  name the subtopic or topic as well (``query_context_rate``, higher for paraphrased queries).
* Graded qrels (TREC-DL style), a judged pool per query; unjudged passages count as 0:
    - 3: a passage of the query's subtopic about exactly what was asked: the query's facet is its
      primary facet, from the asked aspect if any (two-facet query: it covers both facets);
    - 2: a passage of the subtopic that covers a facet of the query otherwise (another aspect, or
      in passing);
    - 1: related: a sample of ``judged_related`` passages of the same topic without the query's
      facets (half from its subtopic, half from the others), and every passage of a sibling
      subtopic that names a facet of the query in passing;
    - 0: a sample of ``judged_offtopic`` passages of other topics, half of them from topics that
      share surface words with the query's topic.
  Every query has at least one passage graded 3 (its anchor).

Measured on "demo" (BM25: bm25s Lucene k1=0.9 b=0.4, English stopwords and Snowball stemmer;
dense: all-MiniLM-L6-v2, cosine), nDCG@10 is roughly 0.55-0.65 for BM25, 0.6-0.65 for the dense
model, and a little higher for their RRF fusion: neither is near 1, and fusion helps.

``generate`` is cached per spec, since several pipeline steps read the same collection: treat the
returned lists as read-only.

Scale collections
-----------------
``scale-10k``, ``scale-100k`` and ``scale-1m`` (passages; 10,000 training queries each, or 100,000
with the suffix ``-q100k``) exist to measure how the pipeline grows, so they are never held in
memory: :func:`iter_docs`, :func:`iter_queries` and :func:`iter_qrels` generate them row by row
(about 60 µs a passage on one core, so a million passages in about a minute), in constant memory.
Each passage comes from a generator seeded by its number, about a facet fixed by its number, with
the presets' sentence machinery; a query asks about a passage drawn by its own seeded generator and
is judged against it (3) and its nearest passages on the same facet (3 or 2, by the presets' rules).
The presets above are unchanged by them.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields

from irflow.errors import IrflowError

# Bump whenever the text, ids or qrels generated for an unchanged spec could change: the version
# is part of SyntheticSpec.identity(), hence of every content-addressed key derived from it.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SyntheticSpec:
    """Every parameter of the generator; equal specs give byte-identical collections."""

    name: str
    seed: int
    n_topics: int  # at most len(_TOPICS) == 27; a seeded sample when fewer
    docs_per_topic: int  # spread evenly over the topic's subtopics
    queries_per_topic: int  # spread evenly over the topic's subtopics
    min_words: int = 30
    max_words: int = 120
    secondary_facets: tuple[int, int] = (1, 2)  # (lo, hi) facets a passage names in passing
    canonical_rate: float = 0.7  # a facet mention uses the facet's first document form
    paraphrase_rate: float = 0.35  # a query's facet mention is a paraphrase that no passage uses
    two_facet_rate: float = 0.25  # a query names two facets
    aspect_query_rate: float = 0.8  # a one-facet query asks about one aspect of its facet
    query_context_rate: tuple[float, float] = (0.3, 1.0)  # query names its field: (lexical, paraphrased)
    context_sentences: tuple[int, int] = (1, 3)  # (lo, hi) sentences about the subtopic at large
    topic_sentences: tuple[int, int] = (1, 2)  # (lo, hi) sentences about the topic at large
    filler_sentences: tuple[int, int] = (0, 3)  # (lo, hi) generic sentences
    digression_rate: float = 0.1  # a passage mentions another topic
    aside_rate: float = 0.3  # a passage names a facet of a sibling subtopic in passing
    judged_related: int = 8  # grade-1 judgements sampled per query
    judged_offtopic: int = 6  # grade-0 judgements sampled per query

    def __post_init__(self) -> None:
        # accept lists (e.g. from YAML or JSON) for the range fields; keep the spec hashable
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    def identity(self) -> dict:
        """JSON-able dict of all generator parameters plus ``generator_version``."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        d["generator_version"] = GENERATOR_VERSION
        return d


PRESETS: dict[str, SyntheticSpec] = {
    # 27 topics x 100 = 2700 passages; 27 x 8 = 216 queries (enough for a train/test split)
    "demo": SyntheticSpec(name="demo", seed=13, n_topics=27, docs_per_topic=100, queries_per_topic=8),
    # 10 topics x 20 = 200 passages; 10 x 3 = 30 queries: for fast unit tests
    "tiny": SyntheticSpec(name="tiny", seed=7, n_topics=10, docs_per_topic=20, queries_per_topic=3),
}


# Bump whenever the rows a ScaleSpec streams could change (it is part of ScaleSpec.identity()).
SCALE_VERSION = 1


@dataclass(frozen=True)
class ScaleSpec:
    """A collection of any size that is generated row by row (see "Scale collections" below).

    Passage ``i`` and query ``n`` each come from their own seeded generator, so any row can be
    made without the others: streaming needs constant memory, and a query's judgements are found
    from its anchor passage's number instead of from a whole corpus in memory.
    """

    name: str
    seed: int
    passages: int
    queries: int
    text: SyntheticSpec  # word ranges and rates of the passages and queries (its sizes are unused)

    def identity(self) -> dict:
        """JSON-able dict of every parameter plus ``scale_version``: the rows depend on nothing else."""
        return {"scale": {"seed": self.seed, "passages": self.passages, "queries": self.queries,
                          "scale_version": SCALE_VERSION}, "text": self.text.identity()}


def _scale(name: str, passages: int, queries: int) -> ScaleSpec:
    return ScaleSpec(name=name, seed=17, passages=passages, queries=queries,
                     text=SyntheticSpec(name=name, seed=17, n_topics=27, docs_per_topic=3, queries_per_topic=0))


#: streaming sizes for the scale benchmark: passages 10k/100k/1M, training queries 10k (default)
#: or 100k (``-q100k``)
SCALES: dict[str, ScaleSpec] = {
    f"scale-{p}{q}": _scale(f"scale-{p}{q}", passages, queries)
    for p, passages in (("10k", 10_000), ("100k", 100_000), ("1m", 1_000_000))
    for q, queries in (("", 10_000), ("-q100k", 100_000))
}


def get_spec(name: str) -> SyntheticSpec | ScaleSpec:
    """The preset or scale collection called ``name``; raises IrflowError for an unknown name."""
    if isinstance(name, str) and name in PRESETS:
        return PRESETS[name]
    if isinstance(name, str) and name in SCALES:
        return SCALES[name]
    known = ", ".join(sorted([*PRESETS, *SCALES]))
    raise IrflowError(f"unknown synthetic collection {name!r}; known: {known}")


@dataclass
class SyntheticCollection:
    docs: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, text), ids "d00042"
    queries: list[tuple[str, str]] = field(default_factory=list)  # (query_id, text), ids "q007"
    qrels: list[tuple[str, str, int]] = field(default_factory=list)  # (query_id, doc_id, grade 0..3)


def generate(name_or_spec: str | SyntheticSpec) -> SyntheticCollection:
    """The collection for a preset name or a spec (cached per spec: do not mutate the result).

    Scale collections are never held in memory: stream them with :func:`iter_docs`,
    :func:`iter_queries` and :func:`iter_qrels`.
    """
    spec = name_or_spec if isinstance(name_or_spec, (SyntheticSpec, ScaleSpec)) else get_spec(name_or_spec)
    if isinstance(spec, ScaleSpec):
        raise IrflowError(f"synthetic collection {spec.name!r} is generated row by row: "
                          "read it with iter_docs/iter_queries/iter_qrels, not generate()")
    _validate(spec)
    return _generate(spec)


def _spec_of(name_or_spec) -> SyntheticSpec | ScaleSpec:
    spec = name_or_spec if isinstance(name_or_spec, (SyntheticSpec, ScaleSpec)) else get_spec(name_or_spec)
    if isinstance(spec, ScaleSpec):
        _validate_scale(spec)
    return spec


def iter_docs(name_or_spec) -> Iterator[tuple[str, str]]:
    """``(doc_id, text)`` of any collection; a scale collection is generated as it is read."""
    spec = _spec_of(name_or_spec)
    if isinstance(spec, ScaleSpec):
        topics = _vocabulary()
        for i in range(spec.passages):
            yield _scale_doc_id(spec, i), _scale_doc(spec, topics, i).text
    else:
        yield from generate(spec).docs


def iter_queries(name_or_spec) -> Iterator[tuple[str, str]]:
    """``(query_id, text)`` of any collection; a scale collection is generated as it is read."""
    spec = _spec_of(name_or_spec)
    if isinstance(spec, ScaleSpec):
        topics = _vocabulary()
        for n in range(spec.queries):
            yield _scale_query_id(spec, n), _scale_query(spec, topics, n, judge=False)[0]
    else:
        yield from generate(spec).queries


def iter_qrels(name_or_spec) -> Iterator[tuple[str, str, int]]:
    """``(query_id, doc_id, grade)`` of any collection; a scale collection is generated as it is read."""
    spec = _spec_of(name_or_spec)
    if isinstance(spec, ScaleSpec):
        topics = _vocabulary()
        for n in range(spec.queries):
            qid = _scale_query_id(spec, n)
            for i, grade in _scale_query(spec, topics, n, judge=True)[1]:
                yield qid, _scale_doc_id(spec, i), grade
    else:
        yield from generate(spec).qrels


# --------------------------------------------------------------------------------------------
# vocabulary
#
# One topic: (name, topic phrases, confusable topics, subtopics). One subtopic: (name, context
# phrases, facets). One facet: "doc form | doc form | doc form // paraphrase | paraphrase".
# Keep every list in a fixed order: the generator indexes into them.

_TOPICS: tuple = (
    ("astronomy", ("astronomy", "the night sky", "stargazing", "space science"), ("film", "marine"), (
        ("stars", ("the life of stars", "stellar astronomy"), (
            "star formation | stellar nurseries | collapsing clouds of gas and dust"
            " // the birth of new suns | how suns come into being",
            "red giants | swollen dying stars | the giant phase of old stars"
            " // bloated elderly suns | a sun puffing up near its end",
            "supernova explosions | exploding massive stars | stellar core collapse"
            " // the violent death of huge suns | cosmic blasts",
            "neutron stars | pulsars | ultra dense stellar remnants"
            " // spinning collapsed corpses of suns | rapidly rotating dead cores",
            "nuclear fusion in stellar cores | hydrogen burning | thermonuclear reactions inside stars"
            " // how a sun makes its energy | the power source of suns",
            "white dwarfs | white dwarf stars | Sirius B"
            " // small hot embers left by ordinary suns | the dim leftover core of a sun",
            "black holes | stellar black holes | event horizons"
            " // places where gravity traps even light | collapsed objects nothing escapes",
            "binary stars | double stars | binary star systems"
            " // pairs of suns orbiting each other | twin suns",
        )),
        ("planets", ("planetary science", "the solar system"), (
            "exoplanets | planets orbiting other stars | extrasolar worlds"
            " // alien worlds around distant suns | far away planets",
            "gas giants | Jupiter and Saturn | giant planets with thick atmospheres"
            " // huge gaseous worlds | the biggest planets",
            "planetary rings | Saturn's ring system | rings of ice and rock"
            " // icy bands circling a world | ring systems",
            "moons and satellites | natural satellites | the moons of Jupiter"
            " // bodies circling planets | lunar companions",
            "habitable zones | the Goldilocks zone | orbits where liquid water can exist"
            " // regions where life could survive | places warm enough for oceans",
            "Mars | the red planet | Martian geology"
            " // the fourth world from the sun | the dusty world rovers explore",
            "asteroids | the asteroid belt | near Earth asteroids"
            " // space rocks between Mars and Jupiter | rocky minor bodies",
            "comets | comet tails | Halley's Comet"
            " // icy visitors with glowing tails | dirty snowballs from the outer system",
        )),
        ("telescopes", ("observational astronomy", "telescope observing"), (
            "refracting telescopes | lens telescopes | refractors"
            " // instruments using glass to magnify the sky | scopes with an objective lens",
            "reflecting telescopes | mirror telescopes | Newtonian reflectors"
            " // scopes gathering light with curved glass | instruments with a primary mirror",
            "light pollution | sky glow from city lights | artificial light at night"
            " // why cities hide the stars | bright urban skies",
            "space telescopes | the Hubble telescope | orbiting observatories"
            " // observing from above the atmosphere | instruments in orbit",
            "radio telescopes | radio dishes | radio astronomy arrays"
            " // huge antennas listening to space | detecting cosmic radio waves",
            "eyepieces | magnification | eyepiece focal length"
            " // the lens you look through | how much a scope enlarges",
            "telescope mounts | equatorial mounts | Dobsonian mounts"
            " // what holds the tube steady | tracking the sky as it turns",
            "astrophotography | long exposure sky photos | stacking images"
            " // taking pictures of the night sky | capturing galaxies with a camera",
        )),
    )),
    ("cooking", ("cooking", "home cooking", "the kitchen", "good food"), ("wine", "coffee"), (
        ("bread", ("home bread baking", "baking bread"), (
            "sourdough starter | starter culture | wild yeast levain"
            " // fermented flour and water mixture | natural leavening",
            "kneading the dough | gluten development | working the dough by hand"
            " // stretching and folding to build structure | making dough elastic",
            "proofing | letting the dough rise | the final rise"
            " // resting time before the oven | waiting for the loaf to puff up",
            "crust and crumb | a crisp crust | an open airy crumb"
            " // the outside and inside texture of a loaf | crunchy exterior",
            "baking temperature | a preheated oven | steam in the oven"
            " // how hot to cook loaves | oven heat settings",
            "flour types | bread flour | wholemeal flour"
            " // which milled grain to buy | strong versus plain flour",
            "rye bread | dark rye loaves | pumpernickel"
            " // dense German style loaves | bread made with rye grain",
            "scoring the loaf | slashing the dough | a lame blade"
            " // cutting patterns on top before baking | decorative cuts",
        )),
        ("sauces", ("classic sauce making", "French sauces"), (
            "roux | butter and flour cooked together | a blond roux"
            " // thickening base of fat and starch | flour paste",
            "emulsions | hollandaise | mayonnaise"
            " // egg yolk sauces that can split | whisking oil into yolks",
            "reduction | simmering stock until it thickens | reducing wine"
            " // boiling down liquid to concentrate flavour | evaporating to thicken",
            "stock | bone broth | veal stock"
            " // liquid made by simmering bones | soup base",
            "seasoning | salt and acidity | a squeeze of lemon"
            " // balancing flavour | adjusting taste",
            "tomato sauce | marinara | passata"
            " // red pasta sauce | cooked down tomatoes",
            "beurre blanc | butter sauces | beurre noisette"
            " // sauces made mostly of butter | browned butter",
            "gravy | pan juices | deglazing the pan"
            " // sauce from the roasting tin | scraping up the browned bits",
        )),
        ("grilling", ("outdoor grilling", "barbecue cooking"), (
            "charcoal grills | lump charcoal | briquettes"
            " // cooking over glowing coals | fuel for the fire",
            "marinades | marinating meat | soaking in oil and spices"
            " // flavouring meat before cooking | overnight soaks",
            "smoking meat | low and slow smoking | wood smoke"
            " // slow cooking brisket for hours | hickory flavour",
            "searing | a hard sear | the Maillard reaction"
            " // browning the surface | getting a dark crust on steak",
            "resting meat | letting the steak rest | carryover cooking"
            " // waiting before slicing | keeping the juices in the roast",
            "skewers | kebabs | kebab skewers"
            " // meat on sticks | grilled cubes of lamb",
            "grilled vegetables | charred peppers | grilled corn"
            " // cooking veg over flames | barbecued aubergines",
            "food safety when grilling | meat thermometers | internal temperature"
            " // checking that chicken is cooked through | avoiding food poisoning at a cookout",
        )),
    )),
    ("football", ("football", "the beautiful game", "soccer", "the sport"), ("tennis", "chess"), (
        ("tactics", ("football tactics", "team formations"), (
            "the offside rule | offside traps | being caught offside"
            " // the rule about attackers behind defenders | the last defender line",
            "pressing | high pressing | gegenpressing"
            " // winning the ball back quickly | hunting the ball in the opponent's half",
            "formations | a four four two | playing with three at the back"
            " // how players are arranged on the pitch | team shape",
            "set pieces | corner kicks | free kicks"
            " // dead ball situations | restarts near goal",
            "counter attacks | fast breaks | playing on the break"
            " // quick transitions after winning possession | racing forward",
            "possession football | tiki taka | keeping the ball"
            " // passing it around patiently | dominating the ball",
            "the long ball | route one football | direct play"
            " // launching it forward | hoofing it up to the big man",
            "zonal marking | man marking | defensive organisation"
            " // how teams guard space or players | who picks up whom",
        )),
        ("positions", ("football positions", "player roles"), (
            "goalkeepers | the keeper | shot stopping"
            " // the player guarding the net | the last line of defence",
            "strikers | centre forwards | goal scorers"
            " // the attacking number nine | finishers",
            "midfielders | playmakers | the engine room"
            " // players who control the tempo | central creators",
            "full backs | wing backs | overlapping defenders"
            " // defenders who run up the flanks | wide defenders",
            "captains | the armband | team leadership"
            " // the leader on the field | who leads the side",
            "centre backs | central defenders | the back four"
            " // the big stoppers in the middle | defenders who head the ball away",
            "wingers | wide forwards | crossing from the byline"
            " // fast players hugging the touchline | flank attackers",
            "the defensive midfielder | the holding midfielder | the number six"
            " // the shield in front of the defence | a ball winning anchor",
        )),
        ("competitions", ("football competitions", "league football"), (
            "the World Cup | international tournaments | the finals tournament"
            " // the global championship held every four years | the international trophy",
            "league tables | points and goal difference | the standings"
            " // how teams are ranked over a season | ranking of clubs",
            "promotion and relegation | going down a division | the drop"
            " // moving between tiers | being demoted",
            "penalty shootouts | spot kicks | deciding a match from twelve yards"
            " // tie breakers after extra time | kicks from the mark",
            "transfer windows | player transfers | signing fees"
            " // buying and selling players | when clubs can recruit",
            "the Champions League | European club football | the group stage"
            " // Europe's elite club tournament | the continental cup",
            "cup competitions | the FA Cup | knockout rounds"
            " // giant killing in a one off tie | sudden death cup ties",
            "the video assistant referee | VAR reviews | goal line technology"
            " // checking decisions on a screen | replays for referees",
        )),
    )),
    ("medicine", ("medicine", "health care", "doctors", "clinical practice"), ("programming", "cycling"), (
        ("heart", ("cardiology", "heart health"), (
            "high blood pressure | hypertension | elevated arterial pressure"
            " // too much force in the arteries | the silent killer",
            "heart attacks | myocardial infarction | blocked coronary arteries"
            " // when blood to the heart muscle is cut off | sudden chest pain emergencies",
            "cholesterol | LDL cholesterol | fatty plaque"
            " // blood fats that clog vessels | lipid levels",
            "arrhythmia | irregular heartbeat | atrial fibrillation"
            " // a heart rhythm that skips | palpitations",
            "heart medication | statins | beta blockers"
            " // pills for the heart | drugs prescribed by a cardiologist",
            "heart failure | a weakened heart | fluid on the lungs"
            " // when the pump cannot keep up | a tired heart muscle",
            "cardiac surgery | bypass surgery | heart valve replacement"
            " // operations on the heart | open chest procedures",
            "stents | angioplasty | balloon catheters"
            " // tiny mesh tubes that hold arteries open | opening blocked vessels without surgery",
        )),
        ("infection", ("infectious disease", "immunology"), (
            "vaccines | immunization | vaccination programmes"
            " // jabs and shots | getting inoculated",
            "viruses | viral infections | influenza"
            " // germs that hijack cells | the flu",
            "antibiotics | penicillin | treating bacterial infections"
            " // drugs that kill germs | medicines for bacteria",
            "antibiotic resistance | superbugs | resistant bacteria"
            " // germs that no longer respond to drugs | drug resistant microbes",
            "herd immunity | community protection | vaccination coverage"
            " // when enough people are protected | stopping an outbreak spreading",
            "hand washing | hygiene | infection control"
            " // keeping germs off your hands | clean hospital practices",
            "pandemics | epidemics | outbreaks of disease"
            " // disease spreading across the world | a global health crisis",
            "fever | high temperature | the immune response"
            " // running hot when ill | chills and sweats",
        )),
        ("diabetes", ("diabetes care", "blood sugar control"), (
            "insulin | insulin injections | the pancreas"
            " // the hormone that lowers glucose | injecting yourself with medicine",
            "blood glucose | blood sugar levels | glucose monitoring"
            " // checking sugar with a finger prick | sugar readings",
            "type two diabetes | insulin resistance | adult onset diabetes"
            " // the lifestyle form of the disease | diabetes linked to weight",
            "carbohydrate counting | low carb diets | the glycemic index"
            " // watching starchy foods | eating fewer sugars",
            "diabetic complications | nerve damage | diabetic foot ulcers"
            " // long term harm from high sugar | eye and kidney problems",
            "type one diabetes | juvenile diabetes | autoimmune diabetes"
            " // the form children are diagnosed with | when the immune system destroys insulin cells",
            "hypoglycaemia | low blood sugar | hypos"
            " // feeling shaky when sugar drops | a sugar crash",
            "insulin pumps | continuous glucose monitors | closed loop systems"
            " // wearable devices for diabetics | an artificial pancreas",
        )),
    )),
    ("gardening",
     ("gardening", "the garden", "horticulture", "growing plants"),
     ("electricity", "wildlife"), (
        ("vegetables", ("vegetable gardening", "the kitchen garden"), (
            "tomato plants | tomatoes | cherry tomatoes"
            " // growing your own juicy red fruit | vine fruit",
            "raised beds | raised garden beds | wooden planters"
            " // elevated growing boxes | boxed plots",
            "crop rotation | rotating crops | changing what grows where each year"
            " // moving vegetables around the plot | avoiding soil disease by switching",
            "sowing seeds | seed starting | germination"
            " // planting seeds indoors in spring | getting seedlings going",
            "garden pests | slugs and snails | aphids"
            " // bugs eating your lettuce | creatures damaging crops",
            "potatoes | seed potatoes | earthing up potatoes"
            " // growing spuds | tubers in the ground",
            "salad leaves | cut and come again lettuce | rocket"
            " // growing your own greens | fresh leaves for the table",
            "greenhouses | polytunnels | cold frames"
            " // glass houses for tender plants | growing under cover",
        )),
        ("flowers", ("flower gardening", "ornamental borders"), (
            "roses | climbing roses | rose bushes"
            " // thorny flowering shrubs | fragrant blooms",
            "pruning | cutting back | deadheading"
            " // trimming old growth | snipping spent flowers",
            "perennials | herbaceous borders | plants that return each year"
            " // flowers that come back every spring | long lived border plants",
            "bulbs | tulips and daffodils | spring bulbs"
            " // flowers planted in autumn that bloom in spring | underground storage organs",
            "pollinators | bees and butterflies | insect pollination"
            " // attracting helpful insects | wildlife friendly planting",
            "dahlias | dahlia tubers | cactus dahlias"
            " // showy late summer blooms | big colourful pompom flowers",
            "lavender | lavender hedges | English lavender"
            " // purple scented shrubs | fragrant herb borders",
            "cut flowers | a cutting garden | flower arranging"
            " // growing blooms for vases | bouquets from the garden",
        )),
        ("soil", ("soil care", "garden soil"), (
            "compost | composting | a compost heap"
            " // rotting kitchen scraps into fertile material | homemade humus",
            "soil pH | acidic soil | alkaline soil"
            " // how sour or sweet the earth is | lime and sulphur",
            "mulch | mulching | bark chippings"
            " // covering the ground to keep moisture | a protective layer on beds",
            "fertilizer | plant feed | nitrogen and potassium"
            " // nutrients for hungry plants | feeding the garden",
            "watering | irrigation | drip hoses"
            " // how often to give plants a drink | keeping beds moist in summer",
            "clay soil | heavy clay | waterlogged ground"
            " // sticky soil that drains badly | dense earth",
            "earthworms | worm casts | soil life"
            " // wriggly creatures that improve the ground | underground helpers",
            "green manure | cover crops | clover and mustard"
            " // plants grown to enrich the earth | digging in a crop",
        )),
    )),
    ("banking", ("banking", "personal finance", "money", "the financial system"), ("rivers", "wine"), (
        ("accounts", ("personal banking", "bank accounts"), (
            "current accounts | checking accounts | everyday bank accounts"
            " // where your salary is paid | an account for daily spending",
            "savings accounts | interest bearing savings | a rainy day fund"
            " // putting money aside | earning a return on cash",
            "overdrafts | overdraft fees | going into the red"
            " // spending more than you have | negative balance charges",
            "online banking | mobile banking apps | internet banking"
            " // managing money on your phone | digital account access",
            "deposit insurance | protected deposits | guaranteed savings"
            " // what happens to your cash if the lender fails | government backed protection",
            "debit cards | bank cards | contactless payments"
            " // paying by tapping a card | plastic for everyday spending",
            "bank fees | account charges | monthly maintenance fees"
            " // what the lender charges you | hidden costs of an account",
            "joint accounts | shared accounts | opening an account together"
            " // a couple managing money together | two names on one account",
        )),
        ("loans", ("borrowing money", "consumer credit"), (
            "mortgages | home loans | a fixed rate mortgage"
            " // borrowing to buy a house | property finance",
            "credit scores | credit ratings | credit history"
            " // how lenders judge you | your borrowing record",
            "interest rates | the annual percentage rate | loan interest"
            " // the cost of borrowing | how much extra you pay back",
            "loan repayments | monthly instalments | paying off debt"
            " // clearing what you owe | a repayment schedule",
            "collateral | secured loans | pledged assets"
            " // security for a loan | things the lender can seize",
            "personal loans | unsecured loans | loan applications"
            " // borrowing a lump sum | cash from a lender",
            "credit cards | credit card debt | minimum payments"
            " // plastic borrowing | revolving balances",
            "payday loans | short term lenders | high cost credit"
            " // expensive quick cash | borrowing until the next wage",
        )),
        ("central", ("central banking", "monetary policy"), (
            "the central bank | the Federal Reserve | the Bank of England"
            " // the institution that sets national money policy | the lender of last resort",
            "inflation | rising prices | the cost of living"
            " // money losing value | prices going up",
            "base rates | policy rates | raising interest rates"
            " // the benchmark cost of money | rate hikes",
            "quantitative easing | bond buying | printing money"
            " // creating money to buy government debt | asset purchases",
            "bank runs | depositors withdrawing en masse | financial panic"
            " // everyone rushing to take out cash | a collapse of trust",
            "exchange rates | a strong dollar | currency devaluation"
            " // what one currency buys in another | the value of the pound",
            "bank regulation | capital requirements | stress tests"
            " // rules that keep lenders safe | checking lenders can survive shocks",
            "recessions | economic downturns | rising unemployment"
            " // when the economy shrinks | hard times and job losses",
        )),
    )),
    ("rivers", ("rivers", "river systems", "fresh water", "streams and rivers"), ("banking", "electricity"), (
        ("landforms", ("river landforms", "how rivers shape land"), (
            "river banks | the riverbank | eroding banks"
            " // the edge of a stream | land along the water",
            "meanders | oxbow lakes | winding river bends"
            " // the loops a river makes | curves cut off from the channel",
            "deltas | the river mouth | sediment deposits"
            " // where a river meets the sea | a fan of silt",
            "erosion | riverbed erosion | the current carving rock"
            " // water wearing away land | the cutting of valleys",
            "waterfalls | rapids | plunge pools"
            " // water dropping over a cliff | whitewater",
            "river sources | headwaters | springs"
            " // where a river begins | the start of a stream high in the hills",
            "gorges | canyons | steep river valleys"
            " // deep cuts through rock | the Grand Canyon",
            "river channels | braided rivers | the thalweg"
            " // the path the water takes | a river splitting into strands",
        )),
        ("fish", ("freshwater ecology", "river wildlife"), (
            "salmon runs | migrating salmon | spawning salmon"
            " // fish swimming upstream to breed | the annual return of fish",
            "trout | brown trout | rainbow trout"
            " // speckled freshwater fish | game fish in clear streams",
            "otters | river otters | beavers"
            " // furry swimming mammals | animals building dams",
            "water quality | dissolved oxygen | river pollution"
            " // how clean the stream is | contamination in the water",
            "wetlands | reed beds | marshes"
            " // soggy ground by the water | swampy habitat",
            "kingfishers | herons | river birds"
            " // brightly coloured diving birds | birds that hunt fish",
            "freshwater invertebrates | mayflies | caddis larvae"
            " // small creatures under stones | insects that live in streams",
            "eels | eel migration | glass eels"
            " // snake like fish that cross oceans | slippery migrating fish",
        )),
        ("floods", ("river flooding", "flood management"), (
            "flood defences | levees | embankments"
            " // walls to hold back water | barriers against high water",
            "flash floods | sudden flooding | torrential runoff"
            " // water rising in minutes | dangerous fast rising water",
            "floodplains | flat land beside the river | water meadows"
            " // areas covered when rivers overflow | low lying fields",
            "river gauges | water level monitoring | flood warnings"
            " // measuring how high the water is | alerts for residents",
            "dams and reservoirs | hydroelectric dams | storage reservoirs"
            " // concrete barriers storing water | artificial lakes",
            "rainfall and runoff | catchment areas | drainage basins"
            " // where rain goes after it falls | the land that feeds a river",
            "flood insurance | flood damage | flood recovery"
            " // paying for water damage | cleaning up after a flood",
            "natural flood management | leaky dams | rewilding rivers"
            " // working with nature to slow water | planting trees to hold back floods",
        )),
    )),
    ("sailing", ("sailing", "yachting", "life at sea", "boating"), ("weather", "marine"), (
        ("handling", ("boat handling", "sailing technique"), (
            "tacking | coming about | turning through the wind"
            " // zigzagging upwind | changing direction into the breeze",
            "trimming the sails | sail trim | adjusting the sheets"
            " // setting the canvas for best speed | pulling ropes to shape the sail",
            "reefing | reducing sail | shortening sail in strong wind"
            " // making the sail smaller in a gale | depowering the boat",
            "knots | the bowline | a clove hitch"
            " // tying ropes securely | rope work",
            "capsizing | righting a dinghy | a boat tipping over"
            " // falling in when the boat flips | recovering after going over",
            "gybing | jibing | the boom swinging across"
            " // turning downwind | changing course with the wind behind",
            "anchoring | dropping anchor | the anchor chain"
            " // stopping the boat in a bay | holding ground",
            "docking | mooring lines | coming alongside"
            " // parking a yacht at the marina | tying up to a pontoon",
        )),
        ("navigation", ("marine navigation", "seamanship"), (
            "nautical charts | chart plotting | marine charts"
            " // maps of the sea | plotting a course on paper",
            "tides | tidal streams | high and low water"
            " // the rise and fall of the sea | moon driven water movements",
            "compass bearings | the magnetic compass | taking a bearing"
            " // finding direction with a needle | heading",
            "GPS navigation | chartplotters | satellite positioning"
            " // electronic position fixing | knowing where you are by satellite",
            "lighthouses and buoys | navigation marks | channel markers"
            " // lights and floats that guide ships | sea signs",
            "dead reckoning | estimating position | speed and time calculations"
            " // working out where you are without GPS | navigating by log and clock",
            "collision regulations | the rules of the road at sea | right of way"
            " // who gives way to whom on the water | avoiding crashes between ships",
            "night sailing | navigation lights | keeping watch"
            " // crossing the sea in darkness | red and green lamps",
        )),
        ("boats", ("sailing boats", "yacht design"), (
            "keels | a fin keel | a ballast keel"
            " // the weighted fin under the hull | what stops a boat blowing sideways",
            "catamarans | twin hulled boats | multihulls"
            " // boats with two hulls | stable wide boats",
            "dinghies | small sailing dinghies | Laser dinghies"
            " // tiny one person boats | little craft for beginners",
            "masts and rigging | the mast | standing rigging"
            " // the pole and wires holding the sails up | spars",
            "hull materials | fibreglass hulls | wooden boats"
            " // what a boat is built from | boat construction",
            "sails | mainsails | jibs and genoas"
            " // the cloth that catches the wind | canvas",
            "racing yachts | the America's Cup | foiling yachts"
            " // fast competition boats | boats that fly above the water",
            "boat maintenance | antifouling | the winter haul out"
            " // keeping a yacht in good order | cleaning the bottom of the hull",
        )),
    )),
    ("volcanoes", ("volcanoes", "volcanology", "volcanic activity", "geology"), ("rome", "mountains"), (
        ("eruptions", ("volcanic eruptions", "eruption science"), (
            "lava flows | molten rock | basalt lava"
            " // rivers of melted stone | red hot liquid rock",
            "pyroclastic flows | glowing avalanches | searing ash clouds"
            " // deadly fast moving volcanic currents | a hurricane of hot gas and rock",
            "volcanic ash | ash plumes | tephra"
            " // fine dust blasted into the sky | grey fallout",
            "explosive eruptions | Plinian eruptions | the eruption of Vesuvius"
            " // violent blasts like the one that buried Pompeii | the most violent outbursts",
            "volcanic gases | sulphur dioxide | gas emissions"
            " // toxic fumes from a crater | smelly vapours",
            "lava domes | dome collapse | viscous lava"
            " // sticky lava piling up | a growing plug in the crater",
            "fissure eruptions | Icelandic eruptions | curtains of fire"
            " // lava pouring out of long cracks | a split in the ground spewing lava",
            "volcanic lightning | dirty thunderstorms | electrified ash clouds"
            " // sparks in an eruption cloud | thunder above a volcano",
        )),
        ("structure", ("volcano structure", "how volcanoes form"), (
            "magma chambers | underground magma | molten reservoirs"
            " // pockets of melted rock deep below | where the molten material is stored",
            "shield volcanoes | Hawaiian volcanoes | broad gentle volcanoes"
            " // wide low mountains built by runny lava | Mauna Loa",
            "stratovolcanoes | composite cones | steep layered volcanoes"
            " // classic cone shaped mountains | Mount Fuji",
            "calderas | collapsed craters | supervolcanoes"
            " // huge basins left after a collapse | Yellowstone",
            "tectonic plates | subduction zones | the Ring of Fire"
            " // moving slabs of crust | plate boundaries",
            "volcanic vents | craters | fumaroles"
            " // openings where gases escape | holes at the top of a volcano",
            "hotspots | mantle plumes | the Hawaiian hotspot"
            " // heat rising from deep in the Earth | fixed plumes under moving plates",
            "volcanic rocks | pumice | obsidian"
            " // stone formed from lava | glassy black rock",
        )),
        ("monitoring", ("volcano monitoring", "hazard assessment"), (
            "seismometers | volcanic earthquakes | volcanic tremor"
            " // small quakes before an eruption | ground shaking",
            "ground deformation | swelling of the volcano | satellite radar"
            " // the mountain bulging | measuring uplift",
            "evacuation plans | exclusion zones | evacuating villages"
            " // getting people out of danger | keeping residents away",
            "lahars | volcanic mudflows | debris flows"
            " // rivers of mud and ash | deadly slurry",
            "eruption forecasting | alert levels | predicting eruptions"
            " // knowing when a volcano will blow | warning systems",
            "gas monitoring | sulphur measurements | gas sensors"
            " // sniffing the fumes for changes | measuring what the crater breathes out",
            "volcano observatories | volcanologists | field work on volcanoes"
            " // scientists who watch volcanoes | research stations near craters",
            "historic eruptions | Krakatoa | Mount St Helens"
            " // famous disasters of the past | the great blasts people remember",
        )),
    )),
    ("chess", ("chess", "the game of chess", "the chessboard", "board games"), ("football", "rome"), (
        ("openings", ("chess openings", "opening theory"), (
            "the Sicilian Defence | Sicilian lines | the Najdorf"
            " // a sharp reply to the king pawn | black's fighting defence",
            "gambits | the Queen's Gambit | pawn sacrifices in the opening"
            " // giving away material early for activity | offering a pawn",
            "opening principles | controlling the centre | developing pieces"
            " // the basic rules for the first moves | getting pieces out quickly",
            "castling | king safety | castling kingside"
            " // tucking the king away | moving the king to shelter",
            "opening repertoire | opening preparation | memorised lines"
            " // the set of starts a player uses | studying the first moves",
            "the French Defence | French structures | the Winawer"
            " // a solid reply with e6 | black's closed defence",
            "the Ruy Lopez | the Spanish Opening | the Berlin Defence"
            " // the old Spanish game | bishop to b5 on move three",
            "the King's Indian Defence | hypermodern openings | fianchetto setups"
            " // letting white take the centre first | a bishop on the long diagonal",
        )),
        ("endgames", ("chess endgames", "endgame technique"), (
            "king and pawn endings | passed pawns | pawn promotion"
            " // getting a pawn to the last rank | queening",
            "rook endgames | the Lucena position | rook endings"
            " // the most common late game with heavy pieces | defending with the rook",
            "checkmate patterns | back rank mate | mating nets"
            " // ways to trap the king | finishing the game",
            "stalemate | drawn positions | a draw by stalemate"
            " // when no legal move is possible | ending the game level",
            "zugzwang | the opposition | tempo moves"
            " // being forced to make a bad move | the obligation to move",
            "bishop versus knight | minor piece endings | the good bishop"
            " // which light piece is better late on | knights against bishops",
            "queen endings | perpetual check | queen versus rook"
            " // endings with the most powerful piece | endless checks to save a draw",
            "endgame tablebases | theoretical endings | endgame studies"
            " // solved positions | computer databases of endings",
        )),
        ("competitive", ("competitive chess", "chess tournaments"), (
            "chess ratings | the Elo system | rating points"
            " // numbers that measure playing strength | how players are ranked",
            "time controls | blitz chess | the chess clock"
            " // fast games with little thinking time | rapid play",
            "grandmasters | world champions | the title of grandmaster"
            " // the best players in the world | elite titles",
            "chess engines | computer analysis | Stockfish"
            " // programs that play better than humans | machine evaluation",
            "tournament rules | the touch move rule | arbiters"
            " // the laws enforced at events | officials at a competition",
            "chess olympiads | team chess | national chess teams"
            " // countries competing at the board | team events",
            "world championship matches | Kasparov | Carlsen"
            " // title matches between the best | the crown of chess",
            "cheating in chess | fair play rules | engine assistance"
            " // using a computer secretly | banned help during games",
        )),
    )),
    ("jazz", ("jazz", "jazz music", "live music", "the music scene"), ("film", "football"), (
        ("improvisation", ("jazz improvisation", "soloing"), (
            "improvised solos | improvisation | soloing over changes"
            " // making up melodies on the spot | spontaneous playing",
            "chord changes | the ii V I progression | jazz harmony"
            " // the sequence of chords in a tune | harmonic movement",
            "blues scales | modes | the Dorian mode"
            " // note collections for soloing | scale choices",
            "swing feel | swing rhythm | swung eighth notes"
            " // the lilting groove | rhythmic bounce",
            "jam sessions | sitting in | jamming"
            " // informal gatherings where musicians play together | open stage nights",
            "licks | jazz vocabulary | transcribing solos"
            " // learning phrases from records | copying the masters by ear",
            "call and response | trading fours | musical conversation"
            " // players answering each other | swapping short solos",
            "jazz standards | the Great American Songbook | the Real Book"
            " // well known tunes everyone plays | fake books",
        )),
        ("instruments", ("jazz instruments", "the jazz band"), (
            "the saxophone | the tenor sax | the alto saxophone"
            " // a reed horn made of brass | Coltrane's instrument",
            "the trumpet | the muted trumpet | the cornet"
            " // a brass horn with valves | Miles Davis's horn",
            "the double bass | walking bass lines | the upright bass"
            " // the big string instrument keeping time | the low end",
            "jazz piano | comping | piano voicings"
            " // keyboard accompaniment | chords on the keys",
            "the drum kit | brushes on the snare | the ride cymbal"
            " // percussion in a combo | keeping the beat",
            "the trombone | the slide trombone | the bone"
            " // brass with a sliding tube | the low horn with a slide",
            "the clarinet | jazz clarinet | the licorice stick"
            " // woodwind used in early bands | Benny Goodman's instrument",
            "the vibraphone | vibes | mallet instruments"
            " // metal bars struck with mallets | a shimmering percussion keyboard",
        )),
        ("history", ("jazz history", "the history of jazz"), (
            "New Orleans jazz | Dixieland | early jazz"
            " // the music born in Louisiana | the first style",
            "the swing era | big bands | Duke Ellington's orchestra"
            " // dance orchestras of the thirties | large ensembles",
            "bebop | Charlie Parker | fast complex bop"
            " // the revolution of the forties | the modern sound of Parker and Gillespie",
            "cool jazz | Kind of Blue | modal jazz"
            " // a relaxed laid back style | the fifties west coast sound",
            "jazz fusion | jazz rock | electric jazz"
            " // mixing jazz with rock and funk | plugged in jazz",
            "jazz singers | scat singing | vocal jazz"
            " // Ella Fitzgerald style vocalists | improvised singing with nonsense syllables",
            "free jazz | avant garde jazz | Ornette Coleman"
            " // music without chords or fixed forms | the experimental sixties",
            "jazz clubs | the Village Vanguard | Harlem nightlife"
            " // small rooms where the music lived | legendary venues",
        )),
    )),
    ("film", ("film", "cinema", "the movies", "Hollywood"), ("astronomy", "jazz"), (
        ("actors", ("film acting", "the acting profession"), (
            "movie stars | film stars | leading actors"
            " // famous faces on the big screen | celebrities",
            "method acting | character preparation | staying in character"
            " // actors living as their role | immersive performance",
            "casting | auditions | screen tests"
            " // choosing actors for parts | trying out for a role",
            "stellar performances | award winning performances | breakout roles"
            " // brilliant acting | a career defining part",
            "fame and paparazzi | tabloid gossip | red carpet events"
            " // photographers chasing celebrities | public attention",
            "child actors | young stars | child performers"
            " // kids in films | youngsters in the movies",
            "stunt performers | stunt doubles | action sequences"
            " // people doing the dangerous scenes | falls and fights for the camera",
            "voice acting | dubbing | animated films"
            " // performers heard but not seen | cartoon voices",
        )),
        ("filmmaking", ("filmmaking", "movie production"), (
            "directors | film directors | the auteur"
            " // the person who shapes the movie | who calls the shots",
            "screenplays | screenwriting | the script"
            " // the written story of a movie | dialogue on paper",
            "cinematography | camera work | the director of photography"
            " // how shots are composed and lit | visual style",
            "special effects | visual effects | CGI"
            " // computer generated imagery | movie magic",
            "film editing | the final cut | montage"
            " // assembling the shots | post production",
            "film scores | soundtracks | film composers"
            " // the music of a movie | orchestral themes",
            "film producers | film financing | independent films"
            " // the people who raise the money | funding a picture",
            "documentaries | documentary film | non fiction film"
            " // true stories on screen | factual movies",
        )),
        ("business", ("the movie business", "film awards"), (
            "the Oscars | the Academy Awards | the Oscar ceremony"
            " // Hollywood's biggest night | golden statuettes",
            "the box office | ticket sales | the opening weekend"
            " // how much money a movie makes | commercial success",
            "film festivals | Cannes | the Sundance festival"
            " // premieres on the Riviera | independent cinema showcases",
            "blockbusters | summer blockbusters | franchise films"
            " // big budget crowd pleasers | sequels and superhero movies",
            "film critics | movie reviews | critical acclaim"
            " // what reviewers think | star ratings",
            "streaming services | streaming platforms | direct to streaming releases"
            " // watching movies at home online | subscription services",
            "cinemas | movie theatres | multiplex screens"
            " // the big screen experience | going to the pictures",
            "film ratings | age ratings | censorship boards"
            " // deciding who can watch a film | certificates for movies",
        )),
    )),
    ("programming",
     ("programming", "software development", "coding", "computers"),
     ("wildlife", "medicine"), (
        ("python", ("Python programming", "coding in Python"), (
            "Python lists | list comprehensions | dictionaries"
            " // built in data structures | arrays and maps in the language",
            "virtual environments | pip packages | dependency management"
            " // installing libraries in isolation | package setup",
            "exceptions | try and except blocks | error handling"
            " // dealing with crashes in code | catching errors",
            "functions | decorators | lambda expressions"
            " // reusable blocks of code | wrapping callables",
            "the Python interpreter | CPython | the global interpreter lock"
            " // how the code is executed | the runtime",
            "classes and objects | object oriented programming | inheritance"
            " // blueprints for data and behaviour | methods and attributes",
            "Python modules | imports | the standard library"
            " // splitting code into files | reusing built in tools",
            "type hints | static typing | mypy"
            " // annotating variables with types | checking types before running",
        )),
        ("debugging", ("debugging", "software quality"), (
            "bugs | software defects | glitches"
            " // mistakes in a program | errors that break things",
            "debuggers | breakpoints | stepping through code"
            " // pausing a program to inspect it | tracing execution",
            "unit tests | test suites | automated testing"
            " // checking code automatically | test coverage",
            "memory leaks | memory usage | garbage collection"
            " // programs eating RAM | freeing unused objects",
            "logging | log files | stack traces"
            " // records of what happened | error output",
            "code review | pull requests | peer review of code"
            " // colleagues checking changes | reviewing patches",
            "version control | git | commits and branches"
            " // tracking changes to code | saving the history of a project",
            "performance profiling | profilers | slow code"
            " // finding where a program spends time | speeding things up",
        )),
        ("security", ("computer security", "cybersecurity"), (
            "computer viruses | malware | ransomware"
            " // malicious programs | software that infects machines",
            "passwords | password managers | two factor authentication"
            " // logging in securely | login codes",
            "encryption | public key cryptography | TLS"
            " // scrambling data | keeping messages secret",
            "phishing | scam emails | social engineering"
            " // tricking people into giving details | fake messages",
            "firewalls | network security | intrusion detection"
            " // blocking attackers | guarding the network",
            "security patches | software updates | vulnerabilities"
            " // fixing holes in programs | keeping systems up to date",
            "data breaches | stolen data | leaked records"
            " // hackers taking customer information | personal details exposed",
            "backups | data backup | disaster recovery"
            " // copies of files in case of loss | restoring after a failure",
        )),
    )),
    ("wildlife",
     ("wildlife", "animal behaviour", "nature", "the animal kingdom"),
     ("programming", "gardening"), (
        ("reptiles", ("reptiles", "herpetology"), (
            "pythons | constrictor snakes | boa constrictors"
            " // snakes that squeeze prey | giant serpents",
            "venomous snakes | rattlesnakes | cobras"
            " // serpents with poisonous bites | deadly fangs",
            "crocodiles | alligators | crocodilians"
            " // armoured river predators | gators",
            "lizards | geckos | iguanas"
            " // scaly four legged reptiles | small climbing reptiles",
            "cold blooded metabolism | basking in the sun | ectothermy"
            " // warming up on rocks | body heat from the environment",
            "turtles and tortoises | sea turtles | giant tortoises"
            " // shelled reptiles | slow armoured animals",
            "chameleons | colour change | camouflage in lizards"
            " // lizards that change colour | hiding by blending in",
            "snake venom | antivenom | snakebite"
            " // poison injected by fangs | treating a bite",
        )),
        ("insects", ("insects", "entomology"), (
            "beetles | ladybirds | stag beetles"
            " // hard shelled bugs | the largest insect order",
            "ant colonies | worker ants | the queen ant"
            " // social insects living underground | nest societies",
            "metamorphosis | caterpillars turning into butterflies | the pupa stage"
            " // larvae transforming into adults | chrysalis change",
            "honeybees | beehives | the waggle dance"
            " // honey making insects | hive life",
            "mosquitoes | insect bites | malaria carrying mosquitoes"
            " // blood sucking flies | biting bugs",
            "dragonflies | damselflies | dragonfly nymphs"
            " // fast flying pond insects | darting hunters over water",
            "termites | termite mounds | wood eating insects"
            " // builders of tall earth towers | pests that eat timber",
            "fireflies | glow worms | insect bioluminescence"
            " // beetles that flash at night | glowing insects",
        )),
        ("bigcats", ("big cats", "predators of the savanna"), (
            "lions | lion prides | male lions"
            " // big maned cats | kings of the savanna",
            "tigers | Bengal tigers | striped cats"
            " // the largest striped predator | jungle hunters",
            "cheetahs | the fastest land animal | sprinting cheetahs"
            " // spotted sprinters | speed hunters",
            "hunting behaviour | stalking prey | ambush predators"
            " // how cats catch food | chasing antelope",
            "poaching | the illegal wildlife trade | conservation of endangered cats"
            " // killing animals for skins | protecting rare species",
            "leopards | jaguars | spotted big cats"
            " // rosette patterned climbers | cats that drag prey into trees",
            "snow leopards | mountain cats | Himalayan leopards"
            " // ghost cats of high mountains | grey cats of the peaks",
            "cubs | raising cubs | big cat mothers"
            " // young cats | how kittens of lions grow up",
        )),
    )),
    ("tennis", ("tennis", "the tennis world", "racket sports", "the tour"), ("law", "football"), (
        ("technique", ("tennis technique", "tennis strokes"), (
            "the serve | the first serve | serving technique"
            " // starting the point overhead | the toss and swing",
            "forehands | the topspin forehand | forehand groundstrokes"
            " // the main stroke from the dominant side | hitting with spin",
            "backhands | the two handed backhand | the one handed backhand"
            " // the stroke from the non dominant side | cross body shots",
            "volleys | net play | serve and volley"
            " // hitting before the bounce | attacking at the net",
            "footwork | the split step | court movement"
            " // moving to the ball | getting into position",
            "the drop shot | touch shots | the slice"
            " // a short soft shot just over the net | a delicate dink",
            "the return of serve | return position | chip and charge"
            " // hitting back a fast delivery | answering the server",
            "the lob | the topspin lob | the overhead smash"
            " // a high ball over the net player | hitting down a high ball",
        )),
        ("tournaments", ("professional tennis", "tennis tournaments"), (
            "Wimbledon | grass courts | the All England Club"
            " // the championships in London | strawberries and cream",
            "the French Open | clay courts | Roland Garros"
            " // the slow red surface | the Paris grand slam",
            "grand slams | major titles | the four majors"
            " // the biggest events of the year | slam trophies",
            "tennis rankings | the ATP rankings | world number one"
            " // how players are ordered | ranking points",
            "tie breaks | deuce | scoring in tennis"
            " // love fifteen thirty | how games are counted",
            "the US Open | hard courts | Flushing Meadows"
            " // the New York grand slam | the summer slam in America",
            "the Australian Open | Melbourne Park | summer heat in Melbourne"
            " // the January grand slam | the first major of the year",
            "the Davis Cup | team tennis | national teams in tennis"
            " // countries competing in tennis | a team competition for nations",
        )),
        ("equipment", ("tennis equipment", "tennis gear"), (
            "tennis rackets | racquet head size | racket frames"
            " // what you hit with | graphite frames",
            "string tension | racket strings | polyester strings"
            " // how tight the stringbed is | restringing",
            "tennis balls | pressurised balls | ball felt"
            " // the yellow fuzzy ball | new balls please",
            "tennis shoes | court shoes | shoe grip"
            " // footwear for the surface | trainers",
            "tennis elbow | wrist injuries | overuse injuries"
            " // a sore arm from playing | joint pain in players",
            "racket grips | overgrips | the Eastern grip"
            " // how you hold the handle | wrapping the racket handle",
            "ball machines | practice drills | hitting partners"
            " // training equipment for repetition | machines that feed balls",
            "tennis clothing | sweatbands | all white dress codes"
            " // what players wear | kit for the court",
        )),
    )),
    ("law", ("the law", "the legal system", "justice", "lawyers"), ("tennis", "rome"), (
        ("criminal", ("criminal law", "criminal justice"), (
            "jury trials | the jury | twelve jurors"
            " // ordinary citizens deciding guilt | verdicts by peers",
            "sentencing | prison sentences | serving a sentence"
            " // punishment after conviction | time behind bars",
            "the right to remain silent | Miranda rights | police questioning"
            " // rules during an arrest | suspect rights",
            "evidence | forensic evidence | witness testimony"
            " // proof shown in court | what the prosecution relies on",
            "appeals | the court of appeal | overturning a conviction"
            " // challenging a verdict | a higher court review",
            "bail | pretrial detention | remand"
            " // being held before trial | release while awaiting trial",
            "plea bargaining | guilty pleas | plea deals"
            " // admitting guilt for a lighter sentence | agreeing terms with prosecutors",
            "defence lawyers | public defenders | legal aid"
            " // a lawyer for the accused | free representation",
        )),
        ("civil", ("civil law", "civil litigation"), (
            "contracts | breach of contract | contract law"
            " // broken agreements | legally binding promises",
            "lawsuits | suing | filing a claim"
            " // taking someone to court | litigation",
            "damages | compensation | financial awards"
            " // money for harm suffered | payouts",
            "settlements | out of court settlements | mediation"
            " // agreeing before trial | resolving disputes privately",
            "negligence | duty of care | personal injury claims"
            " // carelessness that hurts someone | accident claims",
            "wills and probate | inheritance | executors"
            " // what happens to property after death | estates of the deceased",
            "divorce | child custody | family courts"
            " // ending a marriage | who the children live with",
            "landlord and tenant law | eviction | tenancy agreements"
            " // renters and their rights | being thrown out of a flat",
        )),
        ("constitutional", ("constitutional law", "the constitution"), (
            "the supreme court | supreme court justices | the highest court"
            " // the top judges of the nation | final rulings",
            "freedom of speech | the first amendment | free expression"
            " // the right to say what you think | limits of censorship",
            "separation of powers | checks and balances | the three branches"
            " // dividing government authority | limiting power",
            "judicial review | striking down laws | unconstitutional statutes"
            " // judges cancelling legislation | courts overruling parliament",
            "civil rights | equal protection | discrimination law"
            " // fair treatment for all | equality before the law",
            "election law | voting rights | electoral districts"
            " // the right to vote | drawing constituency boundaries",
            "privacy rights | surveillance | data protection law"
            " // being watched by the state | protecting personal information",
            "constitutional amendments | changing the constitution | referendums"
            " // altering the basic law | votes on fundamental rules",
        )),
    )),
    ("coffee", ("coffee", "coffee culture", "the morning cup", "hot drinks"), ("cooking", "wine"), (
        ("brewing", ("coffee brewing", "making coffee"), (
            "espresso | espresso shots | espresso machines"
            " // concentrated coffee under pressure | a short strong cup",
            "pour over coffee | drip brewing | the V60"
            " // filtering hot water slowly | hand brewed filter",
            "the French press | the cafetiere | immersion brewing"
            " // the plunger pot | steeping grounds",
            "grind size | burr grinders | coarse and fine grinds"
            " // how finely the beans are crushed | milling",
            "water temperature | the brew ratio | extraction"
            " // how much coffee per litre | just off the boil",
            "cold brew | iced coffee | cold brewing"
            " // coffee steeped in cold water overnight | chilled coffee",
            "moka pots | stovetop espresso | the Bialetti"
            " // the little aluminium pot on the hob | Italian stove coffee",
            "the AeroPress | pressure brewing | the inverted method"
            " // the plastic plunger brewer | a portable press",
        )),
        ("beans", ("coffee beans", "coffee growing"), (
            "arabica beans | arabica | single origin coffee"
            " // the smoother highland species | specialty beans",
            "robusta | robusta beans | high caffeine beans"
            " // the hardy bitter species | cheap strong coffee",
            "coffee roasting | a light roast | a dark roast"
            " // heating green beans | the roaster's craft",
            "coffee farms | Ethiopian coffee | Colombian plantations"
            " // where coffee is grown | growers in the tropics",
            "fair trade | coffee prices | farmer wages"
            " // paying growers properly | ethical sourcing",
            "green coffee | coffee cherries | processing methods"
            " // raw beans before roasting | the fruit around the seed",
            "coffee freshness | roast dates | storing beans"
            " // how long beans stay good | keeping coffee fresh",
            "coffee flavour notes | acidity in coffee | cupping"
            " // tasting coffee like a professional | fruity and chocolate notes",
        )),
        ("cafe", ("cafe culture", "coffee shops"), (
            "latte art | steamed milk | microfoam"
            " // hearts and leaves in the cup | frothing",
            "baristas | barista training | barista championships"
            " // the people who make your drink | skilled coffee makers",
            "cappuccinos | flat whites | milk drinks"
            " // creamy coffees | foamy cups",
            "caffeine | caffeine content | coffee and sleep"
            " // the stimulant in your cup | staying awake",
            "decaf | decaffeinated coffee | the Swiss water process"
            " // coffee without the buzz | caffeine free",
            "coffee chains | independent cafes | Starbucks"
            " // big brands versus small shops | high street coffee",
            "takeaway cups | reusable cups | coffee waste"
            " // disposable cups piling up | bringing your own mug",
            "coffee and health | coffee and heart health | antioxidants in coffee"
            " // whether coffee is good for you | the effects of coffee on the body",
        )),
    )),
    ("photography",
     ("photography", "taking pictures", "cameras", "the photographic arts"),
     ("astronomy", "film"), (
        ("settings", ("camera settings", "exposure control"), (
            "aperture | f stops | depth of field"
            " // how wide the lens opens | blurry backgrounds",
            "shutter speed | long exposures | motion blur"
            " // how long the sensor is exposed | freezing movement",
            "ISO | sensor sensitivity | image noise"
            " // grainy photos in low light | sensitivity settings",
            "white balance | colour temperature | colour casts"
            " // making whites look neutral | orange or blue tints",
            "autofocus | focus points | manual focus"
            " // getting subjects sharp | focusing modes",
            "exposure compensation | metering modes | the histogram"
            " // making pictures brighter or darker | measuring light",
            "shooting modes | aperture priority | manual mode"
            " // letting the camera decide | semi automatic settings",
            "image stabilisation | camera shake | handheld shooting"
            " // blurry photos from shaky hands | stabilised lenses",
        )),
        ("composition", ("photo composition", "composing images"), (
            "the rule of thirds | grid lines | off centre subjects"
            " // placing things on imaginary lines | balanced framing",
            "leading lines | diagonal lines | perspective"
            " // paths that draw the eye | lines in the frame",
            "golden hour | soft evening light | sunrise light"
            " // shooting when the sun is low | warm light",
            "portraits | portrait photography | headshots"
            " // photos of people | faces",
            "landscape photography | wide angle landscapes | scenic views"
            " // pictures of mountains and valleys | outdoor scenes",
            "street photography | candid shots | urban photography"
            " // pictures of people in public | life on the streets",
            "black and white photography | monochrome | tonal contrast"
            " // photos without colour | greyscale pictures",
            "wildlife photography | bird photography | long lens wildlife shots"
            " // pictures of animals | photographing creatures in the wild",
        )),
        ("gear", ("camera gear", "photography equipment"), (
            "mirrorless cameras | DSLRs | camera bodies"
            " // which camera to buy | interchangeable lens cameras",
            "prime lenses | zoom lenses | telephoto lenses"
            " // glass for your camera | fixed focal lengths",
            "tripods | tripod heads | camera stability"
            " // three legged stands | keeping the camera still",
            "flash photography | speedlights | studio strobes"
            " // artificial light bursts | lighting equipment",
            "photo editing | Lightroom | raw files"
            " // processing images on a computer | retouching",
            "memory cards | SD cards | card write speed"
            " // storage for photos | where pictures are saved",
            "lens filters | polarising filters | camera bags"
            " // accessories | glass that cuts reflections",
            "film cameras | analogue photography | 35mm film"
            " // shooting with rolls of film | old fashioned cameras",
        )),
    )),
    ("mountains",
     ("mountaineering", "climbing mountains", "the mountains", "alpinism"),
     ("volcanoes", "weather"), (
        ("altitude", ("high altitude climbing", "Himalayan expeditions"), (
            "altitude sickness | acute mountain sickness | high altitude cerebral oedema"
            " // feeling ill in thin air | headaches up high",
            "acclimatisation | climb high sleep low | acclimatisation rotations"
            " // letting the body adapt to height | adjusting to less oxygen",
            "bottled oxygen | supplemental oxygen | oxygen masks"
            " // breathing gas on the highest peaks | oxygen cylinders",
            "Mount Everest | the Everest summit | the death zone"
            " // the highest mountain on Earth | Chomolungma",
            "Sherpas | high altitude porters | expedition guides"
            " // local mountain experts from Nepal | guides who carry loads",
            "the Himalaya | eight thousand metre peaks | K2"
            " // the world's highest range | giant mountains of Asia",
            "base camp | expedition logistics | porters and yaks"
            " // the tents at the foot of the mountain | supplying a big climb",
            "summit day | the summit push | turnaround times"
            " // the final climb to the top | deciding when to turn back",
        )),
        ("technical", ("technical climbing", "rock and ice climbing"), (
            "crampons | ice axes | ice climbing"
            " // spikes on boots | frozen waterfalls",
            "ropes and belaying | belay devices | dynamic ropes"
            " // protecting a climbing partner | catching a fall",
            "anchors | protection placement | cams and nuts"
            " // gear placed in cracks | securing the rope to rock",
            "glacier travel | crevasses | roped teams on glaciers"
            " // crossing rivers of ice | hidden cracks in the ice",
            "abseiling | rappelling | descending on a rope"
            " // sliding down the line | lowering off",
            "climbing grades | difficulty grades | the Yosemite decimal system"
            " // how hard a route is | numbers for climbing difficulty",
            "alpine climbing | alpine style | the Alps"
            " // fast light ascents | climbing in the European mountains",
            "bouldering | crash pads | boulder problems"
            " // short climbs without ropes | climbing low rocks",
        )),
        ("safety", ("mountain safety", "hillwalking safety"), (
            "avalanches | avalanche risk | unstable snow slopes"
            " // sliding snow burying climbers | a collapsing snowpack",
            "mountain weather | whiteouts | storms on the summit"
            " // conditions changing quickly up high | bad visibility",
            "mountain rescue | rescue helicopters | search teams"
            " // getting injured walkers down | emergency callouts",
            "hypothermia | frostbite | cold injuries"
            " // body temperature dropping | freezing fingers",
            "route finding | map and compass | navigation on the hill"
            " // finding the way in fog | choosing a line",
            "mountain clothing | layered clothing | waterproof jackets"
            " // what to wear on the hill | kit for bad weather",
            "rockfall | loose rock | falling stones"
            " // stones tumbling down slopes | getting hit by debris",
            "emergency shelters | bivouacs | survival bags"
            " // spending an unplanned night outside | keeping warm when stranded",
        )),
    )),
    ("birds", ("birds", "birdwatching", "ornithology", "bird life"), ("construction", "wildlife"), (
        ("migration", ("bird migration", "migratory birds"), (
            "migration routes | flyways | long distance migration"
            " // paths birds follow each year | seasonal journeys",
            "swallows | swifts | house martins"
            " // summer visitors that catch insects on the wing | fork tailed fliers",
            "cranes | common cranes | whooping cranes"
            " // tall wading birds with long necks | dancing birds",
            "geese | V formations | barnacle geese"
            " // honking flocks | wildfowl flying in a V",
            "navigation by birds | the magnetic sense | the star compass of birds"
            " // how birds find their way | orientation",
            "Arctic terns | the longest migration | pole to pole migration"
            " // birds flying from one end of the planet to the other | seabirds with huge journeys",
            "stopover sites | refuelling on migration | estuaries for waders"
            " // resting places on the journey | where birds feed on the way",
            "storks | white storks | nesting storks"
            " // big birds nesting on rooftops | long legged migrants",
        )),
        ("birding", ("birdwatching", "birding"), (
            "binoculars | spotting scopes | optics for birders"
            " // magnifying glasses for watching | field glasses",
            "field guides | bird identification | plumage"
            " // books for naming species | telling birds apart",
            "birdsong | the dawn chorus | bird calls"
            " // singing at sunrise | the sounds birds make",
            "bird hides | nature reserves | wetland reserves"
            " // shelters for watching unseen | protected sites",
            "bird counts | garden bird surveys | citizen science"
            " // counting what visits your feeder | volunteer surveys",
            "bird feeders | feeding garden birds | nyjer seed"
            " // food for birds in winter | hanging feeders",
            "nest boxes | bird boxes | the breeding season"
            " // homes for birds | where birds raise chicks",
            "rare birds | twitching | vagrants"
            " // chasing unusual sightings | lost birds far from home",
        )),
        ("raptors", ("birds of prey", "raptors"), (
            "eagles | golden eagles | bald eagles"
            " // huge hunting birds | national emblem birds",
            "falcons | peregrine falcons | the peregrine's dive"
            " // the fastest bird | stooping hunters",
            "owls | barn owls | nocturnal hunting"
            " // night birds | silent fliers",
            "red kites | kites and buzzards | soaring raptors"
            " // forked tail scavengers | birds circling on thermals",
            "talons | hooked beaks | keen eyesight"
            " // claws and bills | sharp vision",
            "vultures | griffon vultures | carrion eaters"
            " // birds that clean up carcasses | scavenging raptors",
            "hawks | sparrowhawks | goshawks"
            " // woodland hunters | birds that ambush songbirds",
            "falconry | trained hawks | falconers"
            " // hunting with birds | flying a bird from the glove",
        )),
    )),
    ("construction",
     ("construction", "building work", "the building trade", "civil engineering"),
     ("birds", "electricity"), (
        ("materials", ("building materials", "structural engineering"), (
            "reinforced concrete | rebar | poured concrete"
            " // cement with steel rods | slabs",
            "structural steel | steel frames | I beams"
            " // metal skeletons of towers | girders",
            "timber framing | cross laminated timber | wooden frames"
            " // building with wood | engineered lumber",
            "bricks and mortar | brickwork | masonry"
            " // laying clay blocks | walls of stone",
            "insulation | thermal insulation | cavity wall insulation"
            " // keeping heat in | energy efficient walls",
            "glass facades | curtain walls | glazing"
            " // buildings clad in glass | windows covering a tower",
            "cement | Portland cement | the concrete mix"
            " // the grey powder that binds | mixing aggregates",
            "sustainable building materials | recycled materials | low carbon concrete"
            " // greener ways to build | reusing rubble",
        )),
        ("site", ("construction sites", "site management"), (
            "tower cranes | crane operators | lifting heavy loads"
            " // tall machines on building sites | hoisting steel",
            "scaffolding | scaffold towers | working at height"
            " // temporary frames around buildings | platforms for builders",
            "excavators | earthmoving | heavy plant machinery"
            " // diggers | bulldozers",
            "site safety | hard hats | health and safety rules"
            " // protecting workers | safety helmets",
            "project schedules | construction delays | cost overruns"
            " // finishing on time | budget problems",
            "site surveying | setting out | levelling"
            " // measuring the ground before building | marking where walls go",
            "demolition | controlled demolition | wrecking balls"
            " // knocking buildings down | clearing old structures",
            "construction workers | labourers | the skills shortage"
            " // people who build things | tradesmen on site",
        )),
        ("design", ("architecture", "building design"), (
            "foundations | pile foundations | concrete footings"
            " // what a building stands on | ground support",
            "skyscrapers | high rise towers | tall buildings"
            " // buildings that scrape the clouds | city towers",
            "building codes | planning permission | building regulations"
            " // rules for what can be built | permits",
            "architects | architectural drawings | blueprints"
            " // designers of buildings | plans",
            "earthquake resistant design | seismic design | base isolation"
            " // buildings that survive tremors | quake proofing",
            "bridges | suspension bridges | bridge engineering"
            " // structures that cross rivers | spans",
            "green buildings | passive houses | energy ratings"
            " // eco friendly homes | buildings that need little heating",
            "housing developments | new homes | housebuilding"
            " // building estates | the supply of houses",
        )),
    )),
    ("electricity",
     ("electricity", "electrical power", "energy", "the power sector"),
     ("rivers", "gardening"), (
        ("grid", ("the power grid", "electricity supply"), (
            "power plants | power stations | generating stations"
            " // facilities that produce electricity | where power is made",
            "the national grid | transmission lines | high voltage pylons"
            " // cables carrying power across the country | overhead wires",
            "blackouts | power cuts | outages"
            " // when the lights go out | loss of supply",
            "transformers | substations | stepping down voltage"
            " // equipment that changes voltage | local distribution",
            "peak demand | load balancing | grid frequency"
            " // busy times for electricity use | matching supply to use",
            "smart meters | meter readings | energy monitoring"
            " // devices that track usage | measuring how much power you use",
            "electricity prices | energy bills | electricity tariffs"
            " // how much power costs | what you pay each month",
            "nuclear power | nuclear reactors | uranium fuel"
            " // splitting atoms for electricity | atomic power stations",
        )),
        ("circuits", ("electrical circuits", "basic electronics"), (
            "electric current | amps | alternating current"
            " // the flow of charge | AC and DC",
            "voltage | volts | potential difference"
            " // electrical pressure | what pushes charge",
            "resistance | Ohm's law | resistors"
            " // opposition to flow | current equals voltage over resistance",
            "circuit breakers | fuses | short circuits"
            " // safety devices that cut power | tripped switches",
            "wiring | household wiring | earthing"
            " // cables in your home | ground connections",
            "electric shocks | electrical safety | live wires"
            " // getting zapped | dangers of mains power",
            "capacitors | inductors | electronic components"
            " // parts that store charge | small pieces on a circuit board",
            "static electricity | electric charge | lightning rods"
            " // sparks from rubbing | charge building up",
        )),
        ("renewables", ("renewable energy", "clean power"), (
            "solar panels | photovoltaic cells | rooftop solar"
            " // turning sunlight into electricity | panels on houses",
            "wind turbines | wind farms | offshore wind"
            " // giant propellers making power | windmills",
            "battery storage | grid batteries | lithium ion batteries"
            " // storing power for later | energy storage",
            "hydroelectric power | hydro dams | pumped storage"
            " // electricity from falling water | water power",
            "feed in tariffs | energy subsidies | net metering"
            " // payments for generating power | selling electricity back",
            "electric vehicles | EV charging | charging points"
            " // cars that plug in | topping up a battery car",
            "heat pumps | ground source heat pumps | geothermal energy"
            " // heat from underground | warmth pulled from the earth",
            "tidal power | wave energy | marine energy"
            " // electricity from the sea | power from waves",
        )),
    )),
    ("wine", ("wine", "winemaking", "the wine trade", "vineyards"), ("cooking", "banking"), (
        ("making", ("winemaking", "the winery"), (
            "the grape harvest | the vintage | picking grapes"
            " // gathering fruit in autumn | harvest time in the vineyard",
            "fermentation | yeast converting sugar | malolactic fermentation"
            " // turning juice into alcohol | bubbling vats",
            "oak barrels | barrel ageing | French oak"
            " // wooden casks | maturing in wood",
            "wine pressing | the wine press | crushing grapes"
            " // squeezing the juice out | treading grapes",
            "sulphites | preservatives in wine | natural wine"
            " // additives that keep wine fresh | low intervention bottles",
            "rose wine | pink wine | the saignee method"
            " // wine made from briefly soaked red grapes | blush wine",
            "white winemaking | chardonnay | sauvignon blanc"
            " // making wines from pale grapes | crisp whites",
            "fortified wine | port | sherry"
            " // wine strengthened with brandy | sweet strong wines",
        )),
        ("tasting", ("wine tasting", "the sommelier's craft"), (
            "tannins | tannic red wines | astringency"
            " // the drying feeling in your mouth | grip",
            "aromas | the nose of a wine | the bouquet"
            " // smells in the glass | scents",
            "food and wine pairing | matching wine with food | pairing cheese and wine"
            " // what to drink with dinner | combining dishes and bottles",
            "sommeliers | wine stewards | wine lists"
            " // restaurant wine experts | the wine waiter",
            "decanting | letting wine breathe | decanters"
            " // pouring into a glass jug | aerating",
            "sweetness in wine | dry wines | residual sugar"
            " // how sweet a wine tastes | off dry",
            "wine faults | corked wine | oxidised wine"
            " // something wrong with the bottle | musty smells",
            "wine glasses | glassware | serving temperature"
            " // what to drink from | how cold to serve",
        )),
        ("regions", ("wine regions", "vineyard regions"), (
            "Bordeaux | Bordeaux blends | claret"
            " // the famous French region on the Gironde | left bank reds",
            "Champagne | sparkling wine | the traditional method"
            " // bubbly | fizz",
            "terroir | vineyard soil | microclimate"
            " // the sense of place | how land shapes taste",
            "pinot noir | Burgundy | pinot grapes"
            " // the fickle red grape | delicate reds",
            "wine cellars | cellaring wine | ageing bottles"
            " // storing wine for years | keeping bottles underground",
            "Rioja | Tempranillo | Spanish wine"
            " // reds from northern Spain | oaky Spanish reds",
            "Napa Valley | Californian wine | new world wine"
            " // wine from California | American vineyards",
            "Tuscany | Chianti | Sangiovese"
            " // Italian reds from the hills | wine from Florence's countryside",
        )),
    )),
    ("cycling", ("cycling", "bikes", "life on two wheels", "riding"), ("medicine", "sailing"), (
        ("racing", ("road racing", "professional cycling"), (
            "the Tour de France | the yellow jersey | grand tours"
            " // the three week race in July | the French stage race",
            "the peloton | drafting | slipstreaming"
            " // riding in a pack | sheltering behind others",
            "mountain stages | climbing cols | the king of the mountains"
            " // riding up alpine passes | hill climbs",
            "time trials | aero bikes | racing against the clock"
            " // riding alone for the fastest time | solo efforts",
            "doping scandals | performance enhancing drugs | EPO"
            " // cheating with drugs | banned substances",
            "sprint finishes | lead out trains | sprinters"
            " // the last dash to the line | the fastest riders in a bunch finish",
            "team tactics | domestiques | team leaders"
            " // riders who work for the captain | helpers in a team",
            "track cycling | velodromes | the team pursuit"
            " // racing on a banked oval | indoor racing",
        )),
        ("maintenance", ("bike maintenance", "bicycle repair"), (
            "bike chains | chain lubrication | a worn chain"
            " // keeping the drivetrain oiled | greasing the links",
            "gears and derailleurs | shifting gears | cassettes"
            " // changing cogs | indexing",
            "punctures | inner tubes | tubeless tyres"
            " // flat tyres | fixing holes",
            "brakes | disc brakes | brake pads"
            " // stopping power | calipers",
            "tyre pressure | pumping tyres | track pumps"
            " // how hard to inflate | air in tyres",
            "bike fitting | saddle height | frame size"
            " // setting up a bike to fit you | riding position",
            "wheels | wheel truing | spokes"
            " // keeping rims straight | building wheels",
            "bike cleaning | degreaser | washing the drivetrain"
            " // keeping the bicycle clean | removing grime",
        )),
        ("commuting", ("commuting by bike", "urban cycling"), (
            "cycle lanes | bike paths | segregated infrastructure"
            " // safe routes for riders | separated lanes",
            "e bikes | electric bicycles | pedal assist"
            " // bikes with motors | battery powered bicycles",
            "bike locks | bicycle theft | D locks"
            " // stopping thieves | securing your bike",
            "helmets | cycle helmets | high visibility clothing"
            " // head protection | reflective gear",
            "cycling fitness | cardiovascular fitness | burning calories"
            " // getting fit on two wheels | exercise benefits",
            "road safety for cyclists | heavy traffic | close passes"
            " // staying safe among cars | drivers overtaking too closely",
            "cargo bikes | bike trailers | carrying children by bike"
            " // bikes for hauling loads | family bikes",
            "bike sharing | hire bikes | docking stations"
            " // renting a bike by the hour | city bicycle schemes",
        )),
    )),
    ("weather",
     ("the weather", "meteorology", "weather patterns", "the atmosphere"),
     ("sailing", "mountains"), (
        ("storms", ("severe weather", "storms"), (
            "thunderstorms | lightning | cumulonimbus clouds"
            " // electrical storms | thunder and flashes",
            "hurricanes | tropical cyclones | typhoons"
            " // giant spinning storms over warm oceans | the eye of the storm",
            "tornadoes | twisters | funnel clouds"
            " // violent rotating columns of air | tornado alley",
            "hail | hailstones | hailstorms"
            " // balls of ice falling from the sky | ice pellets",
            "storm surges | coastal flooding | sea level rise during storms"
            " // seawater pushed ashore | high water from wind",
            "blizzards | snowstorms | heavy snowfall"
            " // whiteout snow and wind | winter storms",
            "gales | strong winds | wind damage"
            " // very windy weather | gusts that bring down trees",
            "fog | mist | poor visibility"
            " // thick grey air | murky mornings",
        )),
        ("forecasting", ("weather forecasting", "forecast models"), (
            "weather fronts | cold fronts | warm fronts"
            " // boundaries between air masses | where air meets",
            "air pressure | barometers | high pressure systems"
            " // the weight of the atmosphere | millibars",
            "the jet stream | upper level winds | jet stream patterns"
            " // fast air currents high above | a river of wind",
            "numerical weather prediction | forecast models | supercomputer simulations"
            " // computers predicting tomorrow | model runs",
            "weather satellites | weather radar | satellite imagery"
            " // watching clouds from space | rain radar",
            "weather stations | rain gauges | anemometers"
            " // instruments measuring conditions | backyard weather kits",
            "cloud types | cirrus and stratus | cumulus clouds"
            " // what the sky tells you | reading the clouds",
            "humidity | dew point | relative humidity"
            " // moisture in the air | muggy conditions",
        )),
        ("climate", ("climate", "climatology"), (
            "climate change | global warming | rising temperatures"
            " // the planet heating up | the greenhouse effect",
            "El Nino | La Nina | ocean temperature cycles"
            " // Pacific warming patterns | the southern oscillation",
            "droughts | heatwaves | dry spells"
            " // long periods without rain | extreme heat",
            "monsoons | monsoon rains | the rainy season"
            " // seasonal downpours in Asia | the wet season",
            "greenhouse gases | carbon dioxide | methane"
            " // gases trapping heat | emissions",
            "sea ice | melting glaciers | polar ice caps"
            " // ice disappearing at the poles | shrinking ice sheets",
            "climate records | temperature records | paleoclimate"
            " // the history of past climates | ice cores and tree rings",
            "climate adaptation | climate resilience | adapting to extreme weather"
            " // preparing for a hotter world | coping with change",
        )),
    )),
    ("marine", ("marine biology", "ocean life", "the sea", "the oceans"), ("astronomy", "sailing"), (
        ("reefs", ("coral reefs", "reef ecosystems"), (
            "coral bleaching | bleached coral | heat stressed reefs"
            " // reefs turning white | dying coral",
            "reef fish | clownfish | parrotfish"
            " // colourful tropical fish | fish around corals",
            "the Great Barrier Reef | Australian reefs | reef systems"
            " // the world's largest reef | Queensland coral",
            "sea stars | starfish | crown of thorns starfish"
            " // five armed echinoderms | spiny reef predators",
            "symbiosis | algae living in coral | zooxanthellae"
            " // partnership between species | mutual benefit",
            "sea anemones | anemonefish | stinging tentacles"
            " // flower like animals on reefs | soft stinging polyps",
            "reef sharks | sharks | blacktip sharks"
            " // predators patrolling the reef | toothy fish",
            "coral spawning | coral reproduction | coral larvae"
            " // corals releasing eggs at night | how reefs breed",
        )),
        ("whales", ("marine mammals", "whales and dolphins"), (
            "humpback whales | whale song | breaching whales"
            " // singing giants | whales leaping",
            "dolphins | bottlenose dolphins | echolocation"
            " // clicks used to hunt | clever sea mammals",
            "blue whales | baleen whales | krill feeding"
            " // the largest animal ever | filter feeding giants",
            "whale migration | breeding grounds | feeding grounds"
            " // long journeys between seasons | annual ocean journeys",
            "whaling | commercial whaling | whale conservation"
            " // hunting whales | protecting cetaceans",
            "orcas | killer whales | orca pods"
            " // black and white hunters | the wolves of the sea",
            "seals and sea lions | elephant seals | pinnipeds"
            " // blubbery animals hauling out on beaches | flippered mammals",
            "manatees | dugongs | sea cows"
            " // gentle grazing mammals | slow plant eating sea creatures",
        )),
        ("deepsea", ("the deep ocean", "deep sea biology"), (
            "hydrothermal vents | black smokers | vent communities"
            " // hot springs on the sea floor | volcanic seeps",
            "bioluminescence | glowing animals | light producing organisms"
            " // creatures that make their own light | living light",
            "the abyss | abyssal plains | the ocean floor"
            " // the deepest darkest water | the sea bottom",
            "giant squid | deep sea squid | cephalopods"
            " // huge tentacled animals | sea monsters",
            "ocean currents | deep water circulation | the Gulf Stream"
            " // moving rivers in the sea | the conveyor belt of water",
            "anglerfish | deep sea fish | lanternfish"
            " // fish with glowing lures | strange fish of the dark",
            "submersibles | deep diving submarines | remotely operated vehicles"
            " // machines that explore the depths | robot subs",
            "the Mariana Trench | ocean trenches | the Challenger Deep"
            " // the deepest point on Earth | gashes in the sea floor",
        )),
    )),
    ("rome", ("ancient Rome", "Roman history", "the Romans", "the classical world"), ("volcanoes", "law"), (
        ("empire", ("the Roman Empire", "Roman emperors"), (
            "Julius Caesar | the assassination of Caesar | the Ides of March"
            " // the general murdered in the Senate | Caesar's death",
            "Augustus | the first emperor | the Augustan age"
            " // Octavian | the founder of the principate",
            "the fall of Rome | the decline of the empire | barbarian invasions"
            " // the collapse of the western empire | Rome's end",
            "the Roman Senate | senators | the Republic"
            " // the ruling council | government before the emperors",
            "Nero | the great fire of Rome | mad emperors"
            " // tyrants on the throne | cruel rulers",
            "Constantine | Christianity in Rome | the conversion of the empire"
            " // the emperor who embraced the cross | the new faith of Rome",
            "Marcus Aurelius | Stoicism | the five good emperors"
            " // the philosopher emperor | Meditations",
            "Caligula | imperial scandals | palace intrigue"
            " // the notorious emperor | plots at court",
        )),
        ("army", ("the Roman army", "Roman military history"), (
            "legions | legionaries | the centurion"
            " // Roman soldiers | heavy infantry",
            "Hadrian's Wall | frontier forts | the limes"
            " // the border wall in Britain | defensive lines",
            "siege warfare | siege engines | the siege of Masada"
            " // attacking fortified towns | catapults and ramps",
            "Roman roads | the Appian Way | military roads"
            " // straight paved highways | routes across the empire",
            "gladiators | the Colosseum | games in the arena"
            " // fighters in the amphitheatre | blood sports",
            "the Punic Wars | Hannibal | Carthage"
            " // the war with the north African city | elephants crossing the Alps",
            "the conquest of Britain | Boudica | Roman Britain"
            " // the invasion of the island | the revolt of the Iceni queen",
            "Roman weapons | the gladius | the pilum"
            " // swords and javelins | legionary kit",
        )),
        ("life", ("Roman daily life", "life in ancient Rome"), (
            "Roman baths | the bathhouse | public baths"
            " // hot and cold pools | bathing culture",
            "aqueducts | Roman aqueducts | the water supply"
            " // channels carrying water to cities | arches bringing water",
            "Latin | the Latin language | inscriptions"
            " // the tongue of the Romans | classical writing",
            "Pompeii | Herculaneum | the buried town"
            " // the city destroyed by Vesuvius | preserved ruins",
            "slavery in Rome | enslaved workers | freedmen"
            " // unfree labour | manumission",
            "Roman food | garum | Roman banquets"
            " // what the Romans ate | feasts and dinners",
            "Roman houses | the domus | insulae"
            " // homes of rich and poor | apartment blocks",
            "Roman religion | the Roman gods | temples"
            " // Jupiter and Mars | worship in ancient Rome",
        )),
    )),
)

# Sentences about one facet, neutral as to aspect; {f} is a document form, {c} a context phrase.
_FACET_SENTENCES = (
    "People new to {c} soon come across {f}.",
    "Anyone interested in {c} soon runs into {f}.",
    "Most introductions to {c} spend a whole chapter on {f}.",
    "It helps to see {f} as one part of the bigger picture of {c}.",
    "Questions about {f} come up again and again.",
    "There is still some debate among specialists about {f}.",
    "Careful attention to {f} usually pays off.",
    "In {c}, almost everything is connected to {f} in some way.",
    "This short piece looks mainly at {f}.",
    "Here the focus is on {f}.",
    "Few subjects in {c} are discussed as often as {f}.",
    "Conversations about {c} sooner or later turn to {f}.",
    "More attention should be paid to {f}.",
    "Plenty has been written about {f}.",
    "Almost every discussion of {c} comes round to {f} eventually.",
    "Ask around in {c} and you will hear many opinions on {f}.",
)

# Sentences joining two facets of the same subtopic.
_PAIR_SENTENCES = (
    "{F} and {g} are often discussed together.",
    "The link between {f} and {g} is easy to overlook.",
    "It is hard to talk about {f} without also mentioning {g}.",
    "Some people confuse {f} with {g}, but they are different things.",
)

# The angle a passage takes on its primary facet: (name, sentences naming the facet, follow-up
# sentences, query templates). Passages and queries word an aspect differently on purpose.
_ASPECTS = (
    ("history", (
        "The history of {f} is surprisingly long.",
        "The origins of {f} go back further than most people think.",
        "Historians have traced the development of {f} over many generations.",
        "The early story of {f} is full of colourful characters.",
        "Old records show that people already knew about {f} centuries ago.",
    ), (
        "Much of that past is now forgotten.",
        "Each generation added something new.",
        "Those early pioneers are rarely given credit today.",
        "The old ways are still remembered by a few enthusiasts.",
    ), (
        "history of {f}", "where did {f} come from", "origins of {f}",
        "when was {f} first described", "how did {f} develop over time",
    )),
    ("learning", (
        "Newcomers often find {f} hard to grasp at first.",
        "Getting to grips with {f} takes patience and practice.",
        "A good way to start with {f} is to take things slowly.",
        "Teachers usually introduce {f} step by step.",
        "Most people pick up {f} gradually rather than all at once.",
    ), (
        "A patient mentor makes all the difference.",
        "Short regular sessions work better than long ones.",
        "Everyone struggles at the start.",
        "Progress comes faster than you might expect.",
    ), (
        "{f} for beginners", "how to learn about {f}", "getting started with {f}",
        "beginner tips on {f}", "easiest way to understand {f}",
    )),
    ("myths", (
        "There are plenty of myths about {f}.",
        "A common misconception is that there is nothing more to {f} than meets the eye.",
        "Much popular advice about {f} turns out to be wrong.",
        "People often believe things about {f} that are simply not true.",
        "Some widely repeated claims about {f} do not survive scrutiny.",
    ), (
        "The truth is more nuanced.",
        "Old wives' tales die hard.",
        "Even experts sometimes repeat these errors.",
        "Checking the evidence clears up most of the confusion.",
    ), (
        "myths about {f}", "misconceptions about {f}", "common mistakes about {f}",
        "is it true what people say about {f}", "{f} facts versus fiction",
    )),
    ("mechanism", (
        "Once you see it, the workings of {f} are easy to follow.",
        "The mechanics of {f} are less mysterious than they look.",
        "Careful study has shown exactly what drives {f}.",
        "Behind {f} there is a fairly simple principle.",
        "Researchers have worked out the processes behind {f} in detail.",
    ), (
        "The underlying idea is not complicated.",
        "Each step follows naturally from the one before.",
        "Diagrams make the process much clearer.",
        "A few details are still not fully understood.",
    ), (
        "how does {f} work", "mechanics of {f}", "the science behind {f}",
        "what is the principle behind {f}", "explain how {f} works",
    )),
    ("future", (
        "A great deal about {f} is likely to change in the coming years.",
        "New developments in {f} appear almost every year.",
        "The future of {f} looks more interesting than ever.",
        "Experts expect big changes in {f} over the next decade.",
        "Where {f} will go next is the subject of lively speculation.",
    ), (
        "Technology is moving quickly.",
        "Nobody can say for sure what will happen next.",
        "Younger people are already doing things differently.",
        "Some predictions will surely turn out to be wrong.",
    ), (
        "future of {f}", "latest developments in {f}", "what is next for {f}",
        "how will {f} change", "new trends in {f}",
    )),
    ("benefits", (
        "The benefits of {f} are easy to underestimate.",
        "In practice, {f} can make a real difference.",
        "Without {f} many things would be much harder.",
        "People who take {f} seriously usually see the rewards.",
        "The advantages of {f} become obvious with experience.",
    ), (
        "The payoff can be considerable.",
        "Few would want to go back to doing without it.",
        "The gains are not always visible at first.",
        "It is hard to overstate how useful this is.",
    ), (
        "benefits of {f}", "why is {f} important", "advantages of {f}",
        "is {f} worth it", "why should i care about {f}",
    )),
)

# Sentences about the subtopic at large; {c} is a subtopic context phrase.
_CONTEXT_SENTENCES = (
    "There is plenty of room for disagreement in {c}.",
    "Most people come to {c} through a friend or an evening class.",
    "Anyone who has spent time on {c} will recognise this.",
    "In {c}, patience counts for more than talent.",
    "Writing about {c} has become much more popular online.",
    "The vocabulary of {c} can be confusing at first.",
    "Nobody masters {c} in a single season.",
)

# Sentences about the topic at large; {t} is a topic phrase.
_TOPIC_SENTENCES = (
    "There is a loyal following for {t} all over the world.",
    "People have been fascinated by {t} for a very long time.",
    "There are clubs and online forums devoted to {t} in most countries.",
    "Books about {t} are easy to find in any library.",
    "Casual enthusiasts and serious professionals alike are drawn to {t}.",
    "Many newcomers to {t} feel lost at first.",
    "Interest in {t} has grown steadily in recent years.",
    "Much of what is written about {t} repeats the same few ideas.",
)

_FILLER_SENTENCES = (
    "This is worth keeping in mind.",
    "Opinions differ, of course.",
    "None of this is especially new, but it is often forgotten.",
    "The rest of this note covers a few practical points.",
    "It is easy to make things sound more complicated than they are.",
    "Practice and patience go a long way.",
    "Some of the advice you will hear is simply wrong.",
    "A few simple rules cover most situations.",
    "There is always more to learn.",
    "Every situation is a little different.",
    "Small details can make a big difference.",
    "Experts and amateurs often see things quite differently.",
    "It takes time before any of this feels natural.",
    "Good habits formed early are hard to lose.",
)

# A sentence naming another topic (or one of its facets): cross-topic noise.
_DIGRESSION_SENTENCES = (
    "In some ways it is a bit like {o}.",
    "A friend who is into {o} once made a similar point.",
    "The same is sometimes said about {o}.",
)

# Queries on one facet, with no particular aspect.
_QUERY_ONE = (
    "what is {f}",
    "{f}",
    "tell me about {f}",
    "facts about {f}",
    "{f} in {c}",
    "what should i know about {f}",
    "{f} overview",
    "information on {f}",
)

_QUERY_TWO = (
    "{f} and {g}",
    "how is {f} related to {g}",
    "{f} versus {g}",
    "does {f} affect {g}",
    "{f} {g} {c}",
    "role of {f} in {g}",
    "{f} and {g} explained",
)


@dataclass(frozen=True)
class _Facet:
    doc_forms: tuple[str, ...]
    paraphrases: tuple[str, ...]


@dataclass(frozen=True)
class _Subtopic:
    name: str
    contexts: tuple[str, ...]
    facets: tuple[_Facet, ...]


@dataclass(frozen=True)
class _Topic:
    name: str
    phrases: tuple[str, ...]
    confusable: tuple[str, ...]
    subtopics: tuple[_Subtopic, ...]


@functools.lru_cache(maxsize=1)
def _vocabulary() -> tuple[_Topic, ...]:
    topics = []
    for tname, phrases, confusable, subs in _TOPICS:
        subtopics = []
        for sname, contexts, facet_lines in subs:
            facets = []
            for line in facet_lines:
                docs_part, _, para_part = line.partition("//")
                facets.append(
                    _Facet(
                        doc_forms=tuple(s.strip() for s in docs_part.split("|")),
                        paraphrases=tuple(s.strip() for s in para_part.split("|")),
                    )
                )
            subtopics.append(_Subtopic(sname, tuple(contexts), tuple(facets)))
        topics.append(_Topic(tname, tuple(phrases), tuple(confusable), tuple(subtopics)))
    return tuple(topics)


def _validate(spec: SyntheticSpec) -> None:
    n = len(_TOPICS)
    problems = []
    if not 1 <= spec.n_topics <= n:
        problems.append(f"n_topics must be between 1 and {n}, got {spec.n_topics}")
    if spec.docs_per_topic < 3:
        problems.append(f"docs_per_topic must be at least 3, got {spec.docs_per_topic}")
    if not 0 <= spec.queries_per_topic <= 999 // max(spec.n_topics, 1):
        problems.append(f"queries_per_topic must be between 0 and {999 // max(spec.n_topics, 1)}")
    if spec.n_topics * spec.docs_per_topic > 99999:
        problems.append("at most 99999 passages")
    if not 10 <= spec.min_words <= spec.max_words:
        problems.append(f"need 10 <= min_words <= max_words, got {spec.min_words}, {spec.max_words}")
    for name in ("secondary_facets", "context_sentences", "topic_sentences", "filler_sentences"):
        lo, hi = getattr(spec, name)
        if not 0 <= lo <= hi:
            problems.append(f"{name} must be a range (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
    rates = {n: getattr(spec, n) for n in
             ("canonical_rate", "paraphrase_rate", "two_facet_rate", "aspect_query_rate", "digression_rate",
              "aside_rate")}
    rates["query_context_rate[0]"], rates["query_context_rate[1]"] = spec.query_context_rate
    for name, value in rates.items():
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name} must be between 0 and 1, got {value}")
    if spec.judged_related < 0 or spec.judged_offtopic < 0:
        problems.append("judged_related and judged_offtopic must not be negative")
    if problems:
        raise IrflowError(f"bad synthetic collection spec {spec.name!r}: " + "; ".join(problems))


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _fill(template: str, **slots: str) -> str:
    values = {}
    for key, value in slots.items():
        values[key] = value
        values[key.upper()] = _cap(value)
    return template.format(**values)


def _n_words(sentences) -> int:
    return sum(len(s.split()) for s in sentences)


@dataclass(frozen=True)
class _Doc:
    topic: int
    subtopic: int
    aspect: int  # the angle taken on the primary facet
    facets: tuple[int, ...]  # the primary facet first, then the secondary ones
    text: str
    aside: tuple[int, int] | None = None  # (subtopic, facet) named in passing from a sibling subtopic

    @property
    def primary(self) -> int:
        return self.facets[0]


def _doc_form(rng: random.Random, spec: SyntheticSpec, facet: _Facet) -> str:
    """The facet's first (canonical) form with probability ``canonical_rate``, else another one."""
    if len(facet.doc_forms) == 1 or rng.random() < spec.canonical_rate:
        return facet.doc_forms[0]
    return rng.choice(facet.doc_forms[1:])


def _query_form(rng: random.Random, spec: SyntheticSpec, facet: _Facet) -> tuple[str, bool]:
    """A mention of the facet in a query, and whether it is a paraphrase that no passage uses."""
    if rng.random() < spec.paraphrase_rate:
        return rng.choice(facet.paraphrases), True
    return _doc_form(rng, spec, facet), False


def _drawer(rng: random.Random, templates: tuple[str, ...]):
    """Draw templates without repeats (until all are used), so a passage never says a thing twice."""
    order: list[str] = []

    def draw() -> str:
        if not order:
            order.extend(rng.sample(templates, len(templates)))
        return order.pop()

    return draw


def _write_doc(rng: random.Random, spec: SyntheticSpec, topics, ti: int, si: int, primary: int,
               aspect: int) -> _Doc:
    topic = topics[ti]
    sub = topic.subtopics[si]
    others = [i for i in range(len(sub.facets)) if i != primary]
    lo, hi = spec.secondary_facets
    secondary = rng.sample(others, rng.randint(min(lo, len(others)), min(hi, len(others))))
    facet_sentence = _drawer(rng, _FACET_SENTENCES)
    pair_sentence = _drawer(rng, _PAIR_SENTENCES)

    def form(fi: int) -> str:
        return _doc_form(rng, spec, sub.facets[fi])

    def ctx() -> str:
        return rng.choice(sub.contexts)

    # the primary facet: an aspect sentence and its follow-up, and a neutral sentence before or
    # after them; each secondary facet: one sentence, sometimes shared with the primary facet
    _, aspect_sentences, follow_ups, _ = _ASPECTS[aspect]
    core = [_fill(rng.choice(aspect_sentences), f=form(primary)), rng.choice(follow_ups)]
    neutral = _fill(facet_sentence(), f=form(primary), c=ctx())
    if rng.random() < 0.5:
        core.insert(0, neutral)
    else:
        core.append(neutral)
    for fi in secondary:
        if rng.random() < 0.25:
            core.append(_fill(pair_sentence(), f=form(primary), g=form(fi)))
        else:
            core.append(_fill(facet_sentence(), f=form(fi), c=ctx()))
    aside = None
    if len(topic.subtopics) > 1 and rng.random() < spec.aside_rate:
        other_si = rng.choice([i for i in range(len(topic.subtopics)) if i != si])
        other_fi = rng.randrange(len(topic.subtopics[other_si].facets))
        aside = (other_si, other_fi)
        other_form = _doc_form(rng, spec, topic.subtopics[other_si].facets[other_fi])
        core.append(_fill(pair_sentence(), f=form(primary), g=other_form))

    extra = []
    context_sentence = _drawer(rng, _CONTEXT_SENTENCES)
    for _ in range(rng.randint(*spec.context_sentences)):
        extra.append(_fill(context_sentence(), c=ctx()))
    topic_sentence = _drawer(rng, _TOPIC_SENTENCES)
    for _ in range(rng.randint(*spec.topic_sentences)):
        extra.append(_fill(topic_sentence(), t=rng.choice(topic.phrases)))
    if len(topics) > 1 and rng.random() < spec.digression_rate:
        other = topics[rng.choice([i for i in range(len(topics)) if i != ti])]
        if rng.random() < 0.5:
            o = rng.choice(other.phrases)
        else:
            o = rng.choice(rng.choice(rng.choice(other.subtopics).facets).doc_forms)
        extra.append(_fill(rng.choice(_DIGRESSION_SENTENCES), o=o))
    extra.extend(rng.sample(_FILLER_SENTENCES, rng.randint(*spec.filler_sentences)))

    # fit the length range: drop extras while too long, add filler while too short
    while extra and _n_words(core) + _n_words(extra) > spec.max_words:
        extra.pop(rng.randrange(len(extra)))
    pool = [s for s in _FILLER_SENTENCES if s not in extra]
    while pool and _n_words(core) + _n_words(extra) < spec.min_words:
        extra.append(pool.pop(rng.randrange(len(pool))))

    # interleave: the core keeps its order, extras go anywhere after the first sentence
    sentences = list(core)
    for s in extra:
        sentences.insert(rng.randint(1, len(sentences)), s)
    return _Doc(ti, si, aspect, (primary, *secondary), " ".join(sentences), aside)


@functools.lru_cache(maxsize=8)
def _generate(spec: SyntheticSpec) -> SyntheticCollection:
    return _build(spec)[0]


def _build(spec: SyntheticSpec) -> tuple[SyntheticCollection, dict[str, dict]]:
    """The collection, plus what each passage is about (for diagnostics and tests)."""
    all_topics = _vocabulary()
    pick = random.Random(f"irflow-synthetic:{spec.seed}:topics")
    topics = [all_topics[i] for i in sorted(pick.sample(range(len(all_topics)), spec.n_topics))]
    topic_index = {t.name: i for i, t in enumerate(topics)}

    # ---- passages: round-robin over subtopics, and within one over (primary facet, aspect)
    rng = random.Random(f"irflow-synthetic:{spec.seed}:docs")
    docs: list[_Doc] = []
    for ti, topic in enumerate(topics):
        n_sub = len(topic.subtopics)
        cursors = [rng.randrange(1000) for _ in range(n_sub)]
        aspect_offset = [rng.randrange(len(_ASPECTS)) for _ in range(n_sub)]
        for k in range(spec.docs_per_topic):
            si = k % n_sub
            n_facets = len(topic.subtopics[si].facets)
            primary = cursors[si] % n_facets
            aspect = (cursors[si] // n_facets + aspect_offset[si]) % len(_ASPECTS)
            cursors[si] += 1
            docs.append(_write_doc(rng, spec, topics, ti, si, primary, aspect))
    rng.shuffle(docs)
    doc_ids = [f"d{i:05d}" for i in range(len(docs))]

    by_sub: dict[tuple[int, int], list[int]] = {}
    by_topic: dict[int, list[int]] = {}
    for i, d in enumerate(docs):
        by_sub.setdefault((d.topic, d.subtopic), []).append(i)
        by_topic.setdefault(d.topic, []).append(i)

    # ---- queries: each drawn from an anchor passage, spread over the topic's subtopics
    qrng = random.Random(f"irflow-synthetic:{spec.seed}:queries")
    queries: list[tuple[str, list[tuple[int, int]]]] = []  # (text, [(passage index, grade)])
    seen_text: set[str] = set()
    for ti, topic in enumerate(topics):
        n_sub = len(topic.subtopics)
        sub_order = qrng.sample(range(n_sub), n_sub)
        used_anchors: set[int] = set()
        for k in range(spec.queries_per_topic):
            si = sub_order[k % n_sub]
            sub = topic.subtopics[si]
            members = by_sub[(ti, si)]
            candidates = [i for i in members if i not in used_anchors] or members
            for _attempt in range(20):
                anchor_i = qrng.choice(candidates)
                anchor = docs[anchor_i]
                text, want, aspect = _query_text(qrng, spec, topic, sub, anchor)
                if text not in seen_text:
                    break
            seen_text.add(text)
            used_anchors.add(anchor_i)
            judged = _judge(qrng, spec, docs, topics, topic_index, by_sub, by_topic, ti, si, want, aspect)
            queries.append((text, judged))

    order = list(range(len(queries)))
    qrng.shuffle(order)
    out_queries: list[tuple[str, str]] = []
    out_qrels: list[tuple[str, str, int]] = []
    for qn, qi in enumerate(order):
        qid = f"q{qn:03d}"
        text, judged = queries[qi]
        out_queries.append((qid, text))
        for di, grade in sorted(judged):
            out_qrels.append((qid, doc_ids[di], grade))

    collection = SyntheticCollection(
        docs=[(doc_ids[i], d.text) for i, d in enumerate(docs)],
        queries=out_queries,
        qrels=out_qrels,
    )
    labels = {
        doc_ids[i]: {
            "topic": topics[d.topic].name,
            "subtopic": topics[d.topic].subtopics[d.subtopic].name,
            "facets": d.facets,
            "aspect": _ASPECTS[d.aspect][0],
        }
        for i, d in enumerate(docs)
    }
    return collection, labels


def _judge(rng: random.Random, spec: SyntheticSpec, docs: list[_Doc], topics, topic_index, by_sub,
           by_topic, ti: int, si: int, want: list[int], aspect: int | None) -> list[tuple[int, int]]:
    """Graded judgements for one query (a pool, as in TREC: unjudged passages count as 0).

    Every passage of the subtopic that covers a facet of the query is judged 3 or 2; a sample of
    the other passages of the subtopic and of the topic's other subtopics is judged 1 (related);
    a sample of passages from other topics, first from confusable ones, is judged 0.
    """
    judged: dict[int, int] = {}
    unrelated_same_sub = []
    for i in by_sub[(ti, si)]:
        d = docs[i]
        if not any(f in d.facets for f in want):
            unrelated_same_sub.append(i)
        elif len(want) == 2:
            judged[i] = 3 if all(f in d.facets for f in want) else 2
        elif d.primary == want[0]:
            judged[i] = 3 if aspect is None or d.aspect == aspect else 2
        else:
            judged[i] = 2
    other_subs = []
    for i in by_topic[ti]:
        if docs[i].subtopic != si:
            aside = docs[i].aside
            if aside is not None and aside[0] == si and aside[1] in want:
                judged[i] = 1  # names a facet of the query in passing: related
            else:
                other_subs.append(i)
    n_same = min(len(unrelated_same_sub), (spec.judged_related + 1) // 2)
    for i in rng.sample(unrelated_same_sub, n_same):
        judged[i] = 1
    for i in rng.sample(other_subs, min(len(other_subs), spec.judged_related - n_same)):
        judged[i] = 1
    confusable = [topic_index[n] for n in topics[ti].confusable if n in topic_index]
    near = [i for t in confusable for i in by_topic[t]]
    far = [i for t in range(len(topics)) if t != ti and t not in confusable for i in by_topic[t]]
    n_near = min(len(near), (spec.judged_offtopic + 1) // 2)
    picked = rng.sample(near, n_near)
    picked += rng.sample(far, min(len(far), spec.judged_offtopic - n_near))
    for i in picked:
        judged[i] = 0
    return list(judged.items())


# --------------------------------------------------------------------------------------------
# Scale collections
#
# Passage i is about a facet fixed by its number: topic i % T, then, counting the topic's own
# passages k = i // T, subtopic k % S, primary facet j % F and aspect (j // F) % 6 with j = k // S.
# Its text comes from _write_doc with a generator seeded by (seed, i) alone. So the passages with
# the same subtopic and primary facet as passage i are i + m * T * S * F (the aspect moves on by m),
# those with the same aspect too are i + m * T * S * F * 6, and any of them can be written again
# on demand. Query n draws an anchor passage with a generator seeded by (seed, n), asks about it
# as the presets' queries do, and is judged against the anchor (3) and its nearest siblings of the
# same facet (m = -6, -2, -1, 1, 2, 6), graded by the presets' rules for the query's subtopic.
# Passages are not shuffled: ids follow topics round-robin, which no retrieval model can see.

_SIBLINGS = (-6, -2, -1, 1, 2, 6)


def _validate_scale(spec: ScaleSpec) -> None:
    problems = []
    if not 1 <= spec.passages <= 99_999_999:
        problems.append(f"passages must be between 1 and 99999999, got {spec.passages}")
    if not 0 <= spec.queries <= 9_999_999:
        problems.append(f"queries must be between 0 and 9999999, got {spec.queries}")
    if spec.text.n_topics != len(_TOPICS):
        problems.append(f"text.n_topics must be {len(_TOPICS)} (scale collections use every topic)")
    if problems:
        raise IrflowError(f"bad synthetic collection spec {spec.name!r}: " + "; ".join(problems))
    _validate(spec.text)


def _scale_doc_id(spec: ScaleSpec, i: int) -> str:
    return f"d{i:08d}"


def _scale_query_id(spec: ScaleSpec, n: int) -> str:
    return f"q{n:07d}"


def _scale_plan(topics, i: int) -> tuple[int, int, int, int, int]:
    """(topic, subtopic, primary facet, aspect, stride between passages of the same facet)."""
    n_topics = len(topics)
    ti, k = i % n_topics, i // n_topics
    subs = topics[ti].subtopics
    si, j = k % len(subs), k // len(subs)
    n_facets = len(subs[si].facets)
    return ti, si, j % n_facets, (j // n_facets) % len(_ASPECTS), n_topics * len(subs) * n_facets


def _scale_doc(spec: ScaleSpec, topics, i: int) -> _Doc:
    ti, si, primary, aspect, _ = _scale_plan(topics, i)
    rng = random.Random((spec.seed << 42) + i)
    return _write_doc(rng, spec.text, topics, ti, si, primary, aspect)


def _query_text(qrng: random.Random, spec, topic, sub, anchor) -> tuple[str, list[int], int | None]:
    """A query drawn from an anchor passage: (text, the facets it names, the aspect it asks for).

    Shared by the demo generator and the streaming scale sizes; every draw comes from ``qrng`` in
    a fixed order, so either collection's bytes depend only on its seed.
    """
    want = [anchor.primary]
    aspect = None
    if len(anchor.facets) > 1 and qrng.random() < spec.two_facet_rate:
        want.append(qrng.choice(anchor.facets[1:]))
        qrng.shuffle(want)
    elif qrng.random() < spec.aspect_query_rate:
        aspect = anchor.aspect
    picked = [_query_form(qrng, spec, sub.facets[fi]) for fi in want]
    forms = [f for f, _ in picked]
    paraphrased = any(p for _, p in picked)
    c = qrng.choice(sub.contexts)
    if len(want) == 2:
        template = qrng.choice(_QUERY_TWO)
    elif aspect is not None:
        template = qrng.choice(_ASPECTS[aspect][3])
    else:
        template = qrng.choice(_QUERY_ONE)
    text = _fill(template, f=forms[0], g=forms[-1], c=c)
    if "{c}" not in template and qrng.random() < spec.query_context_rate[int(paraphrased)]:
        text += " " + qrng.choice((c, qrng.choice(topic.phrases)))
    text = text.lower() if qrng.random() < 0.7 else _cap(text)
    return text, want, aspect


def _scale_query(spec: ScaleSpec, topics, n: int, *, judge: bool) -> tuple[str, list[tuple[int, int]]]:
    """Query ``n``'s text and, with ``judge``, its judgements ``[(passage number, grade)]``."""
    text_spec = spec.text
    qrng = random.Random((spec.seed << 42) + (1 << 41) + n)
    anchor_i = qrng.randrange(spec.passages)
    anchor = _scale_doc(spec, topics, anchor_i)
    topic = topics[anchor.topic]
    sub = topic.subtopics[anchor.subtopic]
    text, want, aspect = _query_text(qrng, text_spec, topic, sub, anchor)
    if not judge:
        return text, []
    stride = _scale_plan(topics, anchor_i)[4]
    judged = [(anchor_i, 3)]
    for m in _SIBLINGS:
        i = anchor_i + m * stride
        if not 0 <= i < spec.passages:
            continue
        if len(want) == 2:  # which facets a sibling names in passing is in its text: write it
            facets = _scale_doc(spec, topics, i).facets
            judged.append((i, 3 if all(f in facets for f in want) else 2))
        else:  # same primary facet; the aspect follows from the number
            same_aspect = _scale_plan(topics, i)[3] == anchor.aspect
            judged.append((i, 3 if aspect is None or same_aspect else 2))
    judged.sort()
    return text, judged
