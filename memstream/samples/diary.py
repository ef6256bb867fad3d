"""A second made-up person, written apart from :mod:`memstream.samples.facts`: other things, other words.

Where the first person is asked about and noted down in the third person, this one **tells** things:
each fact arrives as the user saying it in a conversation (the assistant acknowledges it), as a
diary line in the user's own words ("I ..."), and as an assistant's summary ("Noted about the user:
..."). The held-out questions are worded apart from all three. Four themes of eight relations.

The :class:`memstream.samples.facts.Relation` fields are filled as: ``ask`` — what the user says,
``answer`` — the assistant's acknowledgement, ``observation`` — the diary line, ``reflection`` — the
summary.

>>> person = make_diary_person(seed=1, phases=4, facts_per_phase=8)
>>> len(person.facts), sorted({f.phase for f in person.facts})
(32, [0, 1, 2, 3])
>>> f = person.facts[0]
>>> [e["kind"] for e in f.events("ana", ts=0.0)]
['conversation', 'observation', 'reflection']
>>> any(q.lower() in str(f.events("ana", ts=0.0)).lower() for q in f.questions)
False
"""

from __future__ import annotations

import random

from memstream.samples.facts import R, Fact, Person, Relation

__all__ = ["DIARY_RELATIONS", "make_diary_person"]

DIARY_RELATIONS: tuple[tuple[Relation, ...], ...] = (
    (  # people
        R("brother", "Tomas Aurel Benedikt Casimir Dorian Evert Florin Gideon",
          "By the way, my brother is called {v}.", "Thanks for telling me; I'll remember your brother {v}.",
          "Called my brother {v} tonight, we talked for an hour.",
          "Noted about the user: has a brother named {v}.",
          "What's my brother's name?", "Who is my brother?"),
        R("friend", "Marisol Yevgenia Thandiwe Ximena Rosalie Annika Beatriz Zuzanna",
          "My best friend is {v}, we met at school.", "Got it: {v} is your best friend from school.",
          "Coffee with {v} this afternoon, still my best friend after all these years.",
          "Noted about the user: their best friend is {v}.",
          "Who is my closest friend?", "Which friend have I known since school?"),
        R("godchild", "Milo Iris Felix Nora Jasper Lotte Emil Hedda",
          "I'm godparent to a child called {v}.", "How lovely, you're {v}'s godparent.",
          "Bought a picture book for my godchild {v}.",
          "Noted about the user: godparent to {v}.",
          "Who is my godchild?", "What is the name of the child I'm godparent to?"),
        R("landlord", "Pemberton Okafor Haraldsen Villanueva Dimitriou Kaczmarek Lindgren Moreau",
          "My landlord is Mr {v}.", "Understood, Mr {v} is your landlord.",
          "Paid the rent to Mr {v} again, late as usual.",
          "Noted about the user: rents from a landlord called Mr {v}.",
          "Who do I rent my flat from?", "What's my landlord's name?"),
        R("grandmother", "Agathe Brunhilde Cordelia Dagmar Eleonore Franziska Gertrud Hildegard",
          "My grandmother's name is {v}.", "Thank you; your grandmother is {v}.",
          "Visited grandma {v}, she made soup for everyone.",
          "Noted about the user: their grandmother is called {v}.",
          "What is my grandma called?", "Who is my grandmother?"),
        R("teacher", "Abernathy Blackwood Crowther Dunmore Ellsworth Fairweather Greenhalgh Hollingsworth",
          "My piano teacher is Ms {v}.", "Noted, Ms {v} teaches you piano.",
          "Lesson with Ms {v}, scales and more scales.",
          "Noted about the user: takes piano lessons from Ms {v}.",
          "Who gives me piano lessons?", "What's the name of my piano teacher?"),
        R("roommate", "Quentin Rafferty Sebastian Tiberius Ulysses Valentin Wendell Xavier",
          "I share my flat with {v}.", "Okay, {v} is your flatmate.",
          "{v} left the dishes again; sharing a flat is hard.",
          "Noted about the user: lives with a flatmate, {v}.",
          "Who is my flatmate?", "Who do I share my apartment with?"),
        R("mentor", "Ramirez Takahashi Oyelaran Bjornsson Castellano Nowicki Petrakis Sorensen",
          "My mentor at work is Dr {v}.", "Good to know: Dr {v} mentors you.",
          "Dr {v} gave me great advice about my career today.",
          "Noted about the user: mentored by Dr {v}.",
          "Who is my mentor?", "Which doctor mentors me at work?"),
    ),
    (  # home and things
        R("parrot", "Kiwi Mango Rio Sunny Pico Lulu Bingo Tiko",
          "I have a parrot named {v}.", "A parrot! I'll remember {v}.",
          "{v} the parrot learned a new word today.",
          "Noted about the user: keeps a parrot called {v}.",
          "What's my parrot's name?", "What do I call my bird?"),
        R("floor", "second third fourth fifth sixth seventh eighth ninth",
          "I live on the {v} floor.", "Noted: you live on the {v} floor.",
          "The lift broke again, so I climbed to the {v} floor.",
          "Noted about the user: their flat is on the {v} floor.",
          "Which floor is my flat on?", "How high up do I live?"),
        R("bike", "Brompton Cannondale Gazelle Bianchi Trek Cube Merida Batavus",
          "I ride a {v} bike.", "Got it, your bike is a {v}.",
          "Cleaned the chain of my {v} this morning.",
          "Noted about the user: rides a {v}.",
          "What brand is my bicycle?", "Which bike do I own?"),
        R("tea", "rooibos sencha oolong darjeeling chamomile assam genmaicha lapsang",
          "My favourite tea is {v}.", "Noted, {v} is your favourite tea.",
          "A pot of {v} and a book, perfect evening.",
          "Noted about the user: prefers {v} tea.",
          "What tea do I like best?", "Which tea is my favourite?"),
        R("sofa", "green mustard navy burgundy grey teal cream orange",
          "Our sofa is {v}.", "I'll remember the {v} sofa.",
          "Spilled coffee on the {v} sofa, oops.",
          "Noted about the user: has a {v} sofa.",
          "What colour is my sofa?", "Which colour did we get for the couch?"),
        R("wifi", "Starlight Moonbase Treehouse Basecamp Lighthouse Nebula Cloudberry Hideout",
          "Our wifi network is called {v}.", "Okay, your wifi is named {v}.",
          "Reset the router; {v} is back online.",
          "Noted about the user: their home network is {v}.",
          "What is the name of my wireless network?", "How is our home network called?"),
        R("garden", "tomatoes lavender strawberries basil sunflowers rhubarb courgettes peonies",
          "I grow {v} in my garden.", "Lovely, you grow {v}.",
          "Watered the {v} before work.",
          "Noted about the user: gardens, mainly {v}.",
          "What do I grow in the garden?", "Which plants do I grow outside?"),
        R("locker", "14 27 38 41 52 63 76 89",
          "My gym locker is number {v}.", "Noted: locker {v}.",
          "Forgot the key for locker {v} again.",
          "Noted about the user: uses gym locker {v}.",
          "What number is my locker at the gym?", "Which locker do I use at the gym?"),
    ),
    (  # habits and tastes
        R("choir", "Harmonia Cantabile Vox Lumina Resonance Polyphony Aria Chorale",
          "I sing in a choir called {v}.", "How nice, you sing with {v}.",
          "Rehearsal with {v}, the altos were great.",
          "Noted about the user: sings in the {v} choir.",
          "What's the name of my choir?", "Which choir do I sing in?"),
        R("breakfast", "porridge croissants pancakes muesli omelettes bagels waffles congee",
          "I eat {v} for breakfast every day.", "Noted: {v} for breakfast.",
          "Made {v} again this morning.",
          "Noted about the user: has {v} every morning.",
          "What do I have in the morning?", "What is my usual breakfast?"),
        R("hobby", "pottery origami knitting calligraphy woodcarving birdwatching geocaching juggling",
          "My hobby is {v}.", "Oh, {v} is a great hobby.",
          "Spent the whole Saturday on {v}.",
          "Noted about the user: their hobby is {v}.",
          "What do I do in my free time?", "What's my pastime?"),
        R("game", "Carcassonne Catan Azul Wingspan Dominion Pandemic Ticket Splendor",
          "Our favourite board game is {v}.", "Got it: you love playing {v}.",
          "Won at {v} for the first time in weeks.",
          "Noted about the user: plays {v} most weekends.",
          "Which board game do we play most?", "What's our favourite game on the table?"),
        R("alarm", "five six seven eight",
          "I set my alarm for {v} o'clock.", "Okay, your alarm is at {v}.",
          "Up at {v} o'clock as always.",
          "Noted about the user: wakes at {v} o'clock.",
          "What time do I wake up?", "When does my alarm go off?"),
        R("genre", "jazz reggae techno bluegrass flamenco salsa grunge ska",
          "I mostly listen to {v}.", "Nice, {v} it is.",
          "Put on some {v} while cooking.",
          "Noted about the user: loves {v} music.",
          "What kind of music do I like?", "Which music genre do I listen to?"),
        R("series", "Nightwatch Ironbridge Saltwater Hollowmere Blackfen Redcliff Greywater Stormhaven",
          "I'm watching a series called {v}.", "I'll remember you're watching {v}.",
          "Two more episodes of {v}, no regrets.",
          "Noted about the user: watches the series {v}.",
          "What show am I watching right now?", "Which TV series am I following?"),
        R("running", "Tuesdays Wednesdays Thursdays Fridays Saturdays Sundays Mondays",
          "I go running on {v}.", "Got it, running on {v}.",
          "Ran 8 km this morning, as every one of my {v}.",
          "Noted about the user: runs on {v}.",
          "On which day do I go for a run?", "When do I do my runs?"),
    ),
    (  # plans and places
        R("conference", "Lisbon Helsinki Dublin Vienna Prague Athens Warsaw Riga",
          "I'm going to a conference in {v}.", "Noted: the conference is in {v}.",
          "Booked the train to {v} for the conference.",
          "Noted about the user: attends a conference in {v}.",
          "Where is the conference I'm attending?", "Which city is my conference in?"),
        R("course", "astronomy ceramics economics philosophy statistics botany linguistics architecture",
          "I signed up for a course in {v}.", "Good luck with the {v} course.",
          "First {v} lecture tonight, a bit nervous.",
          "Noted about the user: studies {v} in an evening course.",
          "What subject is my evening course?", "Which course did I enrol in?"),
        R("concert", "Coldplay Adele Bjork Radiohead Muse Sting Beyonce Rammstein",
          "I have tickets to see {v} live.", "Enjoy the {v} concert.",
          "Counting down the days until {v}.",
          "Noted about the user: going to a {v} concert.",
          "Whose concert am I going to?", "Which artist will I see live?"),
        R("island", "Madeira Corsica Gotland Skye Crete Hvar Menorca Texel",
          "We're spending the summer on {v}.", "Sounds great, {v} in summer.",
          "Packing list for {v} is getting long.",
          "Noted about the user: summer holiday on {v}.",
          "Which island are we going to this summer?", "Where do we spend the summer holidays?"),
        R("restaurant", "Olivetto Saffrana Brasserie Kinfolk Nomada Fennel Copper Juniperus",
          "Our favourite restaurant is {v}.", "Noted, {v} is your favourite restaurant.",
          "Dinner at {v} for our anniversary.",
          "Noted about the user: likes to eat at {v}.",
          "Which restaurant do we like best?", "Where do we usually go out to eat?"),
        R("marathon", "Berlin Boston Chicago Rotterdam Valencia Seville Frankfurt Amsterdam",
          "I'm training for the {v} marathon.", "Good luck in {v}.",
          "Long run done, {v} marathon is getting closer.",
          "Noted about the user: preparing for the {v} marathon.",
          "Which marathon am I training for?", "What race am I preparing for?"),
        R("move", "Utrecht Leipzig Malmo Graz Bilbao Antwerp Turku Basel",
          "We're moving to {v} next year.", "Exciting, a move to {v}.",
          "Looked at flats in {v} online all evening.",
          "Noted about the user: plans to move to {v}.",
          "Where are we moving to?", "Which city will be our new home?"),
        R("volunteer", "library shelter foodbank hospice museum zoo school hospital",
          "I volunteer at the {v} on weekends.", "That's kind, volunteering at the {v}.",
          "Long shift at the {v} today, tired but happy.",
          "Noted about the user: volunteers at the {v}.",
          "Where do I volunteer?", "Where do I help out on weekends?"),
    ),
)


def make_diary_person(seed: int = 0, phases: int = 4, facts_per_phase: int = 8) -> Person:
    """The diary person: ``facts_per_phase`` facts per theme, values drawn with ``seed``."""
    if not 1 <= phases <= len(DIARY_RELATIONS):
        raise ValueError(f"phases must be between 1 and {len(DIARY_RELATIONS)}, got {phases}")
    if not 1 <= facts_per_phase <= min(len(t) for t in DIARY_RELATIONS):
        raise ValueError(f"facts_per_phase must be between 1 and {min(len(t) for t in DIARY_RELATIONS)}")
    rng = random.Random(seed)
    facts = []
    for phase in range(phases):
        for relation in rng.sample(DIARY_RELATIONS[phase], facts_per_phase):
            facts.append(Fact(relation, rng.choice(relation.values), phase))
    return Person(tuple(facts))
