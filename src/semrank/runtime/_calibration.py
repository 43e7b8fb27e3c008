"""The calibration set of static int8 quantization: short English queries and passages.

Static quantization fixes the range of every activation from example inputs, so the examples
must look like real re-ranking traffic: web-search style questions over many topics, passages
that answer them (relevant pairs), passages about something else (irrelevant pairs, the
other end of the score range) and long multi-paragraph documents that reach the model's
max_length (the late token positions). Written here, not downloaded, so quantization works
offline and every machine calibrates on the same inputs.
"""

from __future__ import annotations

__all__ = ["calibration_pairs", "calibration_texts"]

# (query, a passage that answers it), over many topics and registers.
TOPICS: tuple[tuple[str, str], ...] = (
    (
        "how long do fleas live without a host",
        "Adult fleas usually die within a week or two without a blood meal, but pupae "
        "protected in their cocoons can wait several months for a host to pass by.",
    ),
    (
        "what is the capital of australia",
        "Canberra is the capital city of Australia. It was chosen as a compromise between "
        "Sydney and Melbourne and has been the seat of government since 1927.",
    ),
    (
        "symptoms of vitamin d deficiency",
        "Low vitamin D levels can cause tiredness, bone pain, muscle weakness and frequent "
        "infections. Severe deficiency leads to rickets in children and osteomalacia in adults.",
    ),
    (
        "how to reverse a list in python",
        "Call list.reverse() to reverse a list in place, or use reversed(items) or the slice "
        "items[::-1] to get a reversed copy while keeping the original order.",
    ),
    (
        "why is the sky blue",
        "Sunlight is scattered by the molecules of the atmosphere, and shorter blue "
        "wavelengths scatter much more than red ones, so blue light reaches our eyes from "
        "every direction of the sky.",
    ),
    (
        "who wrote pride and prejudice",
        "Pride and Prejudice is a novel by Jane Austen, published in 1813. It follows "
        "Elizabeth Bennet as she deals with manners, upbringing and marriage in rural England.",
    ),
    (
        "average salary of a registered nurse",
        "Registered nurses in the United States earned a median annual wage of about 86,000 "
        "dollars, with the highest pay in hospitals and in states such as California.",
    ),
    (
        "how many bones are in the human body",
        "An adult human skeleton has 206 bones. Babies are born with around 270, and many "
        "of them fuse together during childhood and adolescence.",
    ),
    (
        "best temperature to bake bread",
        "Most lean bread doughs bake well between 220 and 250 degrees Celsius. Enriched "
        "breads with butter, milk or sugar brown faster and need a cooler oven near 180.",
    ),
    (
        "what causes inflation",
        "Inflation rises when demand for goods and services grows faster than supply, when "
        "production costs such as wages and energy go up, or when the money supply expands.",
    ),
    (
        "difference between a virus and bacteria",
        "Bacteria are single-celled living organisms that can reproduce on their own, while "
        "viruses are much smaller and can only multiply inside the cells of a host. "
        "Antibiotics kill bacteria but do not work against viruses.",
    ),
    (
        "when did the berlin wall fall",
        "The Berlin Wall fell on 9 November 1989, when East German authorities opened the "
        "border crossings and crowds began to tear down the wall that had divided the city.",
    ),
    (
        "how does a heat pump work",
        "A heat pump moves heat instead of generating it: a refrigerant absorbs warmth from "
        "outside air or the ground, a compressor raises its temperature, and the heat is "
        "released inside the building.",
    ),
    (
        "is coffee bad for your heart",
        "For most healthy adults, moderate coffee drinking of three to four cups a day is not "
        "linked to heart disease, although caffeine can briefly raise blood pressure.",
    ),
    (
        "how to remove a stripped screw",
        "Press a wide rubber band between the screwdriver and the screw head for extra grip, "
        "or use a screw extractor bit that bites into the metal as it turns counterclockwise.",
    ),
    (
        "tallest mountain in the world",
        "Mount Everest, on the border of Nepal and China, is the highest mountain above sea "
        "level at 8,849 metres. Mauna Kea is taller measured from its base on the ocean floor.",
    ),
    (
        "what does a tenant have to pay when moving out",
        "When a lease ends, the tenant usually pays the remaining rent and the cost of any "
        "damage beyond normal wear and tear, which the landlord may deduct from the deposit.",
    ),
    (
        "how do vaccines work",
        "Vaccines train the immune system by showing it a harmless piece or weakened form of "
        "a pathogen, so the body makes antibodies and memory cells before a real infection.",
    ),
    (
        "rules of offside in football",
        "A player is offside if they are in the opponents' half and closer to the goal line "
        "than both the ball and the second-last defender when a teammate passes the ball.",
    ),
    (
        "how to convert celsius to fahrenheit",
        "Multiply the temperature in degrees Celsius by 9, divide by 5 and add 32. For "
        "example, 20 degrees Celsius is 68 degrees Fahrenheit.",
    ),
    (
        "what is machine learning",
        "Machine learning is a field of computer science in which programs learn patterns "
        "from example data instead of following hand-written rules, and then use them to "
        "make predictions on new data.",
    ),
    (
        "where do monarch butterflies migrate",
        "Each autumn millions of monarch butterflies from eastern North America fly up to "
        "4,000 kilometres to spend the winter in the fir forests of central Mexico.",
    ),
    (
        "how much water should you drink a day",
        "Health authorities suggest about 2.7 litres of fluid a day for women and 3.7 litres "
        "for men, counting water from food and other drinks, more in hot weather.",
    ),
    (
        "what is a roth ira",
        "A Roth IRA is a retirement account funded with money that has already been taxed; "
        "qualified withdrawals in retirement, including the investment gains, are tax free.",
    ),
    (
        "causes of the first world war",
        "The assassination of Archduke Franz Ferdinand in 1914 set off a war made likely by "
        "military alliances, an arms race, imperial rivalry and nationalism across Europe.",
    ),
    (
        "how to get rid of aphids on roses",
        "Spray aphids off the stems with a strong jet of water, wipe them away by hand, or "
        "apply insecticidal soap; ladybirds and lacewings are natural predators that help.",
    ),
    (
        "speed of light in a vacuum",
        "Light travels through a vacuum at exactly 299,792,458 metres per second, a value "
        "that is now used to define the length of the metre.",
    ),
    (
        "what is the function of the liver",
        "The liver filters toxins from the blood, makes bile to digest fats, stores glucose "
        "as glycogen and produces proteins that help blood to clot.",
    ),
    (
        "how to write a cover letter",
        "Open with the job you are applying for, show in two or three short paragraphs how "
        "your experience matches the role, and close by asking for an interview.",
    ),
    (
        "sql query to count rows in a table",
        "SELECT COUNT(*) FROM orders; returns the number of rows in the orders table. Add a "
        "WHERE clause to count only the rows that match a condition.",
    ),
    (
        "how long does it take to fly from london to new york",
        "A direct flight from London Heathrow to New York JFK takes about eight hours "
        "westbound and around seven hours on the way back, helped by the jet stream.",
    ),
    (
        "what is photosynthesis",
        "Photosynthesis is the process by which plants, algae and some bacteria use sunlight, "
        "water and carbon dioxide to make glucose, releasing oxygen as a by-product.",
    ),
    (
        "cheapest way to heat a house",
        "Heat pumps are usually the cheapest way to heat a well insulated home; sealing "
        "draughts and adding loft insulation cut heating bills whatever the source.",
    ),
    (
        "meaning of the word ubiquitous",
        "Ubiquitous means present, appearing or found everywhere. Smartphones, for example, "
        "have become ubiquitous in modern life.",
    ),
    (
        "how do i reset my router",
        "Hold the small reset button on the back of the router for about ten seconds until "
        "the lights flash; it restarts with the factory settings, so set up Wi-Fi again.",
    ),
    (
        "population of tokyo",
        "About 14 million people live in the Tokyo metropolis, and the greater Tokyo area, "
        "the most populous metropolitan area in the world, has around 37 million inhabitants.",
    ),
    (
        "side effects of ibuprofen",
        "Common side effects of ibuprofen include stomach pain, heartburn, nausea and "
        "dizziness; long-term use at high doses can cause stomach ulcers and kidney problems.",
    ),
    (
        "how do black holes form",
        "Most black holes form when a massive star runs out of fuel and its core collapses "
        "under its own gravity into a region from which not even light can escape.",
    ),
    (
        "what is the gdp of germany",
        "Germany has the largest economy in Europe, with a gross domestic product of roughly "
        "4.5 trillion dollars, driven by cars, machinery, chemicals and exports.",
    ),
    (
        "how to train a puppy to sit",
        "Hold a treat above the puppy's nose and move it slowly back over its head; as its "
        "bottom touches the floor, say sit, give the treat and repeat in short sessions.",
    ),
)

# Passages per long document: enough words to pass 256 tokens, the usual re-ranking length.
LONG_DOCUMENT_PASSAGES = 7


def calibration_pairs() -> list[tuple[str, str]]:
    """Each query with its answer, with an unrelated passage and with a long document."""
    pairs = []
    for i, (query, passage) in enumerate(TOPICS):
        unrelated = TOPICS[(i + len(TOPICS) // 2) % len(TOPICS)][1]
        pairs += [(query, passage), (query, unrelated), (query, _long_document(i))]
    return pairs


def calibration_texts() -> list[str]:
    """Single texts for embedders: the queries, the passages and long documents."""
    queries = [query for query, _ in TOPICS]
    passages = [passage for _, passage in TOPICS]
    return queries + passages + [_long_document(i) for i in range(len(TOPICS))]


def _long_document(first: int) -> str:
    """Passage ``first`` followed by other topics: a long page that answers it once."""
    n = len(TOPICS)
    return " ".join(TOPICS[(first + k) % n][1] for k in range(LONG_DOCUMENT_PASSAGES))
