"""Hand-written contrast cases: pairs a reward model must order (README, "Contrast cases").

Each case: a question with passages, a `better` and a `worse` response that differ in one way
only, and the feedback type whose total must be higher for `better` (completeness: its score).
Five kinds, eight cases each:

- off_topic:  an on-topic answer vs an answer about something else (relevance)
- fabricated: a sentence the passage supports vs the same sentence with a made-up name, date
              or number (factuality)
- repeated:   an answer vs the same answer with one sentence repeated (relevance: "Redundant")
- truncated:  a complete answer vs its first sentence only (completeness)
- fragment:   an on-topic answer vs its first 1-4 words alone (relevance: a piece of an answer is
              not an answer; added 2026-11-28 after a PPO policy learnt to answer in one word)

Written for this project; the passages paraphrase common encyclopaedic facts.
"""

P_HAMLET = ["Hamlet: Hamlet is a tragedy written by William Shakespeare sometime between 1599 and 1601. "
            "It is Shakespeare's longest play, with 29,551 words. Set in Denmark, the play depicts Prince Hamlet "
            "and his attempts to exact revenge against his uncle, Claudius."]
P_EVEREST = ["Mount Everest: Mount Everest is Earth's highest mountain above sea level, located in the Mahalangur "
             "Himal sub-range of the Himalayas. Its elevation of 8,848.86 m was most recently established in 2020 "
             "by the Chinese and Nepali authorities. The first recorded ascent was in 1953 by Tenzing Norgay and "
             "Edmund Hillary."]
P_CURIE = ["Marie Curie: Marie Curie was a Polish and naturalised-French physicist and chemist who conducted "
           "pioneering research on radioactivity. She was the first woman to win a Nobel Prize, in 1903. "
           "She won a second Nobel Prize, in Chemistry, in 1911."]
P_TITANIC = ["Titanic: RMS Titanic was a British passenger liner that sank in the North Atlantic Ocean on 15 April "
             "1912 after striking an iceberg during her maiden voyage from Southampton to New York City. "
             "Of the estimated 2,224 passengers and crew aboard, more than 1,500 died."]
P_PYTHON = ["Python (programming language): Python is a high-level, general-purpose programming language. "
            "It was created by Guido van Rossum and first released in 1991. Python 3.0 was released in 2008."]
P_AMAZON = ["Amazon River: The Amazon River in South America is the largest river by discharge volume of water in "
            "the world. It flows through Peru, Colombia and Brazil before emptying into the Atlantic Ocean. "
            "The river is about 6,400 km long."]
P_MOON = ["Apollo 11: Apollo 11 was the American spaceflight that first landed humans on the Moon. Commander "
          "Neil Armstrong and lunar module pilot Buzz Aldrin landed the Apollo Lunar Module Eagle on 20 July 1969. "
          "Michael Collins flew the command module Columbia alone in lunar orbit."]
P_BEATLES = ["The Beatles: The Beatles were an English rock band formed in Liverpool in 1960. The group's best-known "
             "line-up comprised John Lennon, Paul McCartney, George Harrison and Ringo Starr. They broke up in 1970."]

TOPICS = [
    ("Who wrote Hamlet?", P_HAMLET),
    ("How tall is Mount Everest?", P_EVEREST),
    ("When did Marie Curie win the Nobel Prize?", P_CURIE),
    ("When did the Titanic sink?", P_TITANIC),
    ("Who created Python?", P_PYTHON),
    ("Which countries does the Amazon River flow through?", P_AMAZON),
    ("Who landed on the Moon with Apollo 11?", P_MOON),
    ("Who were the members of the Beatles?", P_BEATLES),
]

OFF_TOPIC = [
    ("Hamlet is a tragedy written by William Shakespeare between 1599 and 1601.",
     "Bananas are a good source of potassium and are eaten all over the world."),
    ("Mount Everest has an elevation of 8,848.86 m, established in 2020.",
     "My favourite football team plays in red shirts every Saturday afternoon."),
    ("Marie Curie won the Nobel Prize in 1903, and a second one in Chemistry in 1911.",
     "Good bread needs flour, water, salt and a lot of patience to rise properly."),
    ("The Titanic sank in the North Atlantic Ocean on 15 April 1912 after striking an iceberg.",
     "Cats sleep for most of the day and like to sit in warm sunny places."),
    ("Python was created by Guido van Rossum and first released in 1991.",
     "The best time to plant tomatoes is after the last frost of spring has passed."),
    ("The Amazon River flows through Peru, Colombia and Brazil.",
     "Jazz music developed from blues and ragtime and spread quickly through dance halls."),
    ("Neil Armstrong and Buzz Aldrin landed on the Moon on 20 July 1969.",
     "I like turtles, and I also enjoy long walks along quiet beaches."),
    ("The Beatles were John Lennon, Paul McCartney, George Harrison and Ringo Starr.",
     "Regular exercise and enough sleep help most people feel more energetic."),
]

FABRICATED = [
    ("Hamlet was written by William Shakespeare between 1599 and 1601.",
     "Hamlet was written by Christopher Marlowe between 1599 and 1601."),
    ("Mount Everest was first climbed in 1953 by Tenzing Norgay and Edmund Hillary.",
     "Mount Everest was first climbed in 1921 by George Mallory and Howard Somervell."),
    ("Marie Curie won a second Nobel Prize, in Chemistry, in 1911.",
     "Marie Curie won a second Nobel Prize, in Chemistry, in 1927."),
    ("More than 1,500 people died when the Titanic sank.",
     "More than 4,800 people died when the Titanic sank near Reykjavik."),
    ("Python was first released in 1991 by Guido van Rossum.",
     "Python was first released in 1984 by Dennis Ritchie."),
    ("The Amazon River is about 6,400 km long.",
     "The Amazon River is about 9,750 km long and ends in the Pacific near Lima."),
    ("Michael Collins flew the command module Columbia in lunar orbit.",
     "Yuri Gagarin flew the command module Columbia in lunar orbit."),
    ("The Beatles were formed in Liverpool in 1960.",
     "The Beatles were formed in Manchester in 1957 by Mick Jagger."),
]

REPEATED = [
    "Hamlet is a tragedy written by William Shakespeare. It is set in Denmark.",
    "Mount Everest is the highest mountain above sea level. It lies in the Himalayas.",
    "Marie Curie won the Nobel Prize in 1903. She won a second one in 1911.",
    "The Titanic sank on 15 April 1912. It struck an iceberg during her maiden voyage.",
    "Python was created by Guido van Rossum. It was first released in 1991.",
    "The Amazon River flows through Peru, Colombia and Brazil. It empties into the Atlantic Ocean.",
    "Neil Armstrong and Buzz Aldrin landed on the Moon in 1969. Michael Collins stayed in lunar orbit.",
    "The Beatles were formed in Liverpool in 1960. They broke up in 1970.",
]

COMPLETE = [
    "Hamlet is a tragedy written by William Shakespeare sometime between 1599 and 1601. It is his longest play, "
    "set in Denmark, where Prince Hamlet seeks revenge against his uncle Claudius.",
    "Mount Everest is Earth's highest mountain above sea level, at 8,848.86 m, a height established in 2020. "
    "It lies in the Mahalangur Himal sub-range of the Himalayas and was first climbed in 1953 by Tenzing Norgay "
    "and Edmund Hillary.",
    "Marie Curie won the Nobel Prize in Physics in 1903, as the first woman to win a Nobel Prize. She won a "
    "second Nobel Prize, in Chemistry, in 1911, for her pioneering research on radioactivity.",
    "The Titanic sank in the North Atlantic Ocean on 15 April 1912 after striking an iceberg during her maiden "
    "voyage from Southampton to New York City. More than 1,500 of the estimated 2,224 people aboard died.",
    "Python was created by Guido van Rossum and first released in 1991. It is a high-level, general-purpose "
    "programming language, and Python 3.0 was released in 2008.",
    "The Amazon River flows through Peru, Colombia and Brazil before emptying into the Atlantic Ocean. It is "
    "the largest river in the world by discharge volume and is about 6,400 km long.",
    "Neil Armstrong and Buzz Aldrin landed the lunar module Eagle on the Moon on 20 July 1969 during Apollo 11. "
    "Michael Collins flew the command module Columbia alone in lunar orbit.",
    "The Beatles were John Lennon, Paul McCartney, George Harrison and Ringo Starr. The English rock band was "
    "formed in Liverpool in 1960 and broke up in 1970.",
]


def _first_sentence(text: str) -> str:
    return text.split(". ")[0] + "."


def cases() -> list[dict]:
    out = []
    for (q, ps), (good, bad) in zip(TOPICS, OFF_TOPIC):
        out.append({"kind": "off_topic", "type": "relevance", "question": q, "passages": ps, "better": good,
                    "worse": bad})
    for (q, ps), (good, bad) in zip(TOPICS, FABRICATED):
        out.append({"kind": "fabricated", "type": "factuality", "question": q, "passages": ps, "better": good,
                    "worse": bad})
    for (q, ps), text in zip(TOPICS, REPEATED):
        first = text.split(". ")[0] + "."
        out.append({"kind": "repeated", "type": "relevance", "question": q, "passages": ps, "better": text,
                    "worse": f"{text} {first}"})
    for (q, ps), text in zip(TOPICS, COMPLETE):
        out.append({"kind": "truncated", "type": "completeness", "question": q, "passages": ps, "better": text,
                    "worse": _first_sentence(text)})
    for n, ((q, ps), (good, _)) in enumerate(zip(TOPICS, OFF_TOPIC)):
        out.append({"kind": "fragment", "type": "relevance", "question": q, "passages": ps, "better": good,
                    "worse": " ".join(good.split()[: 1 + n % 4])})
    return out


def type_value(result: dict, ftype: str) -> float:
    """What a case compares: the type's total reward (completeness: its score, before normalisation)."""
    t = result["types"][ftype]
    if ftype == "completeness":
        return t["segments"][0]["score"]
    return t["total"]


def ordered(case: dict, better: dict, worse: dict) -> bool:
    """Strictly higher for `better` (a tie is not an ordering)."""
    return type_value(better, case["type"]) > type_value(worse, case["type"])
