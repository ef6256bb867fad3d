"""Facts about a fictional person, told as memory events and asked back in other words.

Written for this project. Each :class:`Relation` is one thing a person tells their assistant (who
their sister is, what their dog is called, ...) with:

- three ways it arrives as memory events — a **conversation** turn (the person asks, the assistant
  answers), an **observation** and a **reflection** (plain text the assistant wrote down);
- **held-out questions**: paraphrases that never appear in any memory, asked after training;
- a pool of values, so that each seed makes up a different person, and the answer is a word the
  base model cannot guess.

An answer counts as recalled when it contains the value (case-insensitive): the fact's key word.

Examples
--------
>>> person = make_person(seed=0, phases=2, facts_per_phase=3)
>>> len(person.facts), person.facts[0].phase, person.facts[3].phase
(6, 0, 1)
>>> f = person.facts[0]
>>> sorted({e["kind"] for e in f.events("ana", ts=0.0)})
['conversation', 'observation', 'reflection']
>>> any(q in str(f.events("ana", ts=0.0)) for q in f.questions)  # the questions are never trained on
False
>>> recalled(f, f"Yes: {f.value.upper()}!")
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RELATIONS", "Fact", "Person", "Relation", "make_person", "recalled"]


@dataclass(frozen=True)
class Relation:
    """One kind of fact; ``{v}`` stands for its value."""

    slot: str
    values: tuple[str, ...]
    ask: str  # the person's question in the conversation memory
    answer: str  # the assistant's answer in it
    observation: str
    reflection: str
    questions: tuple[str, ...]  # held out: asked after training, never trained on


def R(slot, values, ask, answer, observation, reflection, *questions) -> Relation:
    return Relation(slot, tuple(values.split()), ask, answer, observation, reflection, tuple(questions))


#: Three themes of ten relations; a person's phases go through them in order.
RELATIONS: tuple[tuple[Relation, ...], ...] = (
    (  # family and home
        R("sister", "Odile Maren Ilse Solveig Tamsin Greta Linnea Oona",
          "What's my sister called again?", "Your sister is called {v}.",
          "Observation: the user's sister is named {v}.",
          "Reflection: {v}, the user's sister, came up again today; family clearly matters to them.",
          "Who is my sister?", "Remind me of my sister's name."),
        R("dog", "Pixel Biscuit Mochi Pepper Waffle Noodle Ziggy Bramble",
          "What is my dog's name?", "Your dog is called {v}.",
          "Observation: the user walks their dog {v} every morning.",
          "Reflection: the user lights up whenever {v}, their dog, is mentioned.",
          "What's the name of my dog?", "How is my dog called?"),
        R("hometown", "Tromso Bruges Ghent Aarhus Lucerne Bergen Tartu Zadar",
          "Where did I grow up?", "You grew up in {v}.",
          "Observation: the user was raised in {v}.",
          "Reflection: the user often compares everything to {v}, the town they grew up in.",
          "Which town am I from?", "In what town did I spend my childhood?"),
        R("partner", "Anselm Theo Ruben Kasimir Elio Matthis Jonas Silas",
          "Who is my partner?", "Your partner is {v}.",
          "Observation: the user lives with their partner {v}.",
          "Reflection: the user plans most weekends around {v}, their partner.",
          "What is my partner's name?", "Whom do I live with as my partner?"),
        R("street", "Juniper Larkspur Rowan Hawthorn Alder Willow Sorrel Bracken",
          "What street do I live on?", "You live on {v} Street.",
          "Observation: the user's home is on {v} Street.",
          "Reflection: the user likes the quiet of {v} Street, where they live.",
          "Which street is my home on?", "What's the name of the street where I live?"),
        R("cat", "Saffron Juno Clementine Marzipan Nutmeg Quince Tansy Velvet",
          "What did we name the cat?", "The cat is named {v}.",
          "Observation: the user's cat {v} sleeps on the radiator.",
          "Reflection: the user worries about {v}, their cat, when they travel.",
          "What is my cat called?", "Tell me my cat's name."),
        R("nephew", "Lorcan Emrys Tobiah Caspian Ansgar Fintan Leopold Ravi",
          "What's my nephew's name?", "Your nephew is {v}.",
          "Observation: the user bought a birthday present for their nephew {v}.",
          "Reflection: the user wants to spend more time with {v}, their nephew.",
          "Who is my nephew?", "My nephew is called what?"),
        R("car", "Skoda Volvo Subaru Peugeot Mazda Renault Kia Citroen",
          "What car do I drive?", "You drive a {v}.",
          "Observation: the user's car is a {v}.",
          "Reflection: the user keeps their old {v} running because they like it.",
          "Which car brand is mine?", "What make is my car?"),
        R("neighbour", "Wilhelmina Prudence Ottilie Henrietta Philippa Rosamund Beatrix Clothilde",
          "Who is the neighbour who waters my plants?", "{v}, your neighbour, waters your plants.",
          "Observation: the user's neighbour {v} has a spare key.",
          "Reflection: the user trusts {v}, the neighbour, with the house.",
          "Which neighbour has my spare key?", "What is my neighbour's name?"),
        R("anniversary", "January February March April May June July August",
          "When is our anniversary?", "Your anniversary is in {v}.",
          "Observation: the user's wedding anniversary falls in {v}.",
          "Reflection: the user wants to plan something special for the anniversary in {v}.",
          "In which month is my anniversary?", "What month do we celebrate our anniversary?"),
    ),
    (  # work and health
        R("employer", "Brightwave Quillon Northmere Velocore Ambergrid Tidewell Lumenstack Corvane",
          "Where do I work?", "You work at {v}.",
          "Observation: the user is employed by {v}.",
          "Reflection: the user has mixed feelings about their job at {v}.",
          "Which company employs me?", "What's the name of my employer?"),
        R("manager", "Ingeborg Rosalind Valentina Leocadia Seraphina Ottoline Gwendolyn Isadora",
          "Who is my manager?", "Your manager is {v}.",
          "Observation: the user reports to {v}.",
          "Reflection: the user finds {v}, their manager, demanding but fair.",
          "Who do I report to at work?", "What's my boss's name?"),
        R("allergy", "peanuts shellfish penicillin sesame latex pollen walnuts mustard",
          "What am I allergic to?", "You are allergic to {v}.",
          "Observation: the user has an allergy to {v}.",
          "Reflection: the user checks every label because of their {v} allergy.",
          "What allergy do I have?", "Which thing must I avoid because of an allergy?"),
        R("doctor", "Okonkwo Lindqvist Castellanos Nakamura Fitzgerald Bergstrom Adeyemi Kowalczyk",
          "Who is my doctor?", "Your doctor is Dr {v}.",
          "Observation: the user sees Dr {v} for check-ups.",
          "Reflection: the user feels listened to by Dr {v}.",
          "What is my doctor's name?", "Which doctor do I see?"),
        R("sport", "rowing fencing climbing squash badminton curling archery judo",
          "Which sport do I do?", "You do {v}.",
          "Observation: the user trains at {v} twice a week.",
          "Reflection: {v} is how the user clears their head after work.",
          "What sport do I practise?", "Which sport do I train in?"),
        R("project", "Heron Kestrel Osprey Merlin Plover Curlew Avocet Dunlin",
          "What is my project at work called?", "Your project is called {v}.",
          "Observation: the user leads the project {v}.",
          "Reflection: the {v} project keeps the user up at night.",
          "What's the name of the project I lead?", "Which project am I in charge of?"),
        R("commute", "tram ferry bicycle train scooter bus metro carpool",
          "How do I get to work?", "You go to work by {v}.",
          "Observation: the user commutes by {v}.",
          "Reflection: the user reads a lot on the {v} to work.",
          "What is my way of commuting?", "How do I travel to the office?"),
        R("colleague", "Bartholomew Evander Peregrine Lysander Thaddeus Ignatius Cornelius Ambrose",
          "Who do I have lunch with at work?", "You have lunch with {v}.",
          "Observation: the user eats lunch with their colleague {v}.",
          "Reflection: {v} is the colleague the user trusts most.",
          "Which colleague do I eat lunch with?", "Who is my closest colleague?"),
        R("vitamin", "magnesium zinc iron calcium folate selenium iodine potassium",
          "Which supplement do I take?", "You take {v} every day.",
          "Observation: the user takes a daily {v} supplement.",
          "Reflection: the user started {v} on their doctor's advice.",
          "What supplement is part of my routine?", "Which daily supplement do I use?"),
        R("language", "Icelandic Basque Welsh Estonian Maltese Frisian Romansh Breton",
          "What language am I learning?", "You are learning {v}.",
          "Observation: the user practises {v} in the evenings.",
          "Reflection: learning {v} makes the user feel like a student again.",
          "Which language do I study?", "What new language am I working on?"),
    ),
    (  # travel and leisure
        R("trip", "Reykjavik Ljubljana Valletta Tbilisi Porto Kraków Tallinn Bologna",
          "Where is my next trip?", "Your next trip is to {v}.",
          "Observation: the user booked a trip to {v}.",
          "Reflection: the user has wanted to see {v} for years.",
          "Which city am I travelling to next?", "What's my next destination?"),
        R("instrument", "cello oboe banjo harp bassoon ukulele accordion mandolin",
          "What instrument do I play?", "You play the {v}.",
          "Observation: the user practises the {v} on Sundays.",
          "Reflection: playing the {v} calms the user down.",
          "Which instrument am I playing?", "What do I play in music?"),
        R("dish", "risotto goulash moussaka paella ramen tagine borscht pierogi",
          "What's my favourite dish?", "Your favourite dish is {v}.",
          "Observation: the user orders {v} whenever they can.",
          "Reflection: {v} reminds the user of home.",
          "What do I like to eat most?", "Which food is my favourite?"),
        R("author", "Tokarczuk Jansson Lagerlof Saramago Calvino Kundera Mahfouz Achebe",
          "Who is my favourite author?", "Your favourite author is {v}.",
          "Observation: the user rereads {v} every summer.",
          "Reflection: the user quotes {v} more than anyone else.",
          "Which writer do I love most?", "Whose books are my favourite?"),
        R("airline", "Finnair Icelandair Aegean Norwegian Lufthansa Iberia Brussels Austrian",
          "Which airline do I fly with?", "You fly with {v}.",
          "Observation: the user collects miles with {v}.",
          "Reflection: the user sticks to {v} for the lounges.",
          "What airline do I usually take?", "Which airline has my frequent flyer miles?"),
        R("plant", "monstera ficus calathea begonia fern cactus orchid philodendron",
          "What plant is on my desk?", "There is a {v} on your desk.",
          "Observation: the user keeps a {v} on their desk.",
          "Reflection: the user talks to the {v} on their desk.",
          "Which plant sits on my desk?", "What kind of plant do I keep at my desk?"),
        R("podcast", "Driftwood Lanternfish Saltmarsh Tinderbox Overgrown Longshore Quarterlight Fogbank",
          "What podcast do I listen to?", "You listen to {v}.",
          "Observation: the user never misses an episode of {v}.",
          "Reflection: {v} is the user's favourite podcast for long drives.",
          "Which podcast do I follow?", "What's the podcast I always listen to?"),
        R("team", "Valencia Celtic Feyenoord Benfica Galatasaray Sevilla Rapid Brondby",
          "Which football team do I support?", "You support {v}.",
          "Observation: the user watches every {v} match.",
          "Reflection: the user's mood depends on how {v} played.",
          "What team am I a fan of?", "Who do I cheer for in football?"),
        R("hotel", "Seagull Kingfisher Lighthouse Driftwood Harbour Meadow Granite Juniper",
          "Which hotel did I book?", "You booked the {v} Hotel.",
          "Observation: the user reserved a room at the {v} Hotel.",
          "Reflection: the user chose the {v} Hotel for its view.",
          "What's the name of my hotel?", "Where am I staying on the trip?"),
        R("museum", "Rijksmuseum Prado Uffizi Louvre Hermitage Belvedere Orsay Tate",
          "Which museum do I want to visit?", "You want to visit the {v}.",
          "Observation: the user bought tickets for the {v}.",
          "Reflection: the user has read everything about the {v}.",
          "What museum is on my list?", "Which museum am I eager to see?"),
    ),
)


@dataclass(frozen=True)
class Fact:
    relation: Relation
    value: str
    phase: int

    @property
    def questions(self) -> tuple[str, ...]:
        return self.relation.questions

    def events(self, profile: str, ts: float, id_prefix: str = "") -> list[dict]:
        """The fact as three memory events: a conversation turn, an observation and a reflection."""
        r, v = self.relation, self.value
        base = {"profile": profile, "meta": {"domain": f"facts-{self.phase}", "fact": r.slot}}
        tag = f"{id_prefix}{r.slot}"
        return [
            {**base, "id": f"{tag}-c", "ts": ts, "kind": "conversation", "prompt": r.ask.format(v=v),
             "response": r.answer.format(v=v)},
            {**base, "id": f"{tag}-o", "ts": ts + 1, "kind": "observation", "text": r.observation.format(v=v)},
            {**base, "id": f"{tag}-r", "ts": ts + 2, "kind": "reflection", "text": r.reflection.format(v=v)},
        ]


@dataclass(frozen=True)
class Person:
    facts: tuple[Fact, ...]

    def phase(self, index: int) -> list[Fact]:
        return [f for f in self.facts if f.phase == index]

    @property
    def phases(self) -> int:
        return max(f.phase for f in self.facts) + 1


def make_person(seed: int = 0, phases: int = 3, facts_per_phase: int = 10,
                relations: tuple[tuple[Relation, ...], ...] = RELATIONS) -> Person:
    """A fictional person: ``facts_per_phase`` facts per theme of ``relations``, values drawn with ``seed``."""
    if not 1 <= phases <= len(relations):
        raise ValueError(f"phases must be between 1 and {len(relations)}, got {phases}")
    if not 1 <= facts_per_phase <= min(len(t) for t in relations):
        raise ValueError(f"facts_per_phase must be between 1 and {min(len(t) for t in relations)}")
    rng = random.Random(seed)
    facts = []
    for phase in range(phases):
        for relation in rng.sample(relations[phase], facts_per_phase):
            facts.append(Fact(relation, rng.choice(relation.values), phase))
    return Person(tuple(facts))


def recalled(fact: Fact, answer: str) -> bool:
    """Whether ``answer`` names the fact's key word."""
    return fact.value.lower() in answer.lower()
