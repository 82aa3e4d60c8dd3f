#!/usr/bin/env python3
"""Writes Data/stories.txt and Data/stories.jsonl: simple English short stories generated
from a small template grammar, so that distill owns a corpus for its quickstart and tests.

Plain Python 3, no dependencies, deterministic: the same script writes the same bytes
(random.Random with fixed seeds; only seeded calls whose results are stable across Python
versions are used: random(), randrange(), choice(), shuffle()).

Each story: an opening that sets a character in a place, a wish or a problem, a short
dialogue with a friend, an attempt that fails, a second try that works, a feeling at the
end and a moral. Run from the repository root:

    python3 tools/make_corpus.py            # writes both files
    python3 tools/make_corpus.py --check    # regenerates in memory, compares to Data/
"""

import argparse
import json
import os
import random
import sys

# ---------------------------------------------------------------------------- vocabulary

# (name, kind, pronoun set)
HEROES = [
    ("Mia", "girl", "she"), ("Leo", "boy", "he"), ("Pip", "little fox", "he"), ("Nora", "rabbit", "she"),
    ("Tom", "boy", "he"), ("Lily", "girl", "she"), ("Max", "puppy", "he"), ("Rosa", "duck", "she"),
    ("Ben", "bear cub", "he"), ("Ada", "girl", "she"), ("Sam", "mouse", "he"), ("Ivy", "kitten", "she"),
    ("Otto", "old turtle", "he"), ("Zoe", "girl", "she"), ("Finn", "frog", "he"), ("Luna", "owl", "she"),
    ("Jack", "boy", "he"), ("Ella", "squirrel", "she"), ("Hugo", "hedgehog", "he"), ("Mila", "lamb", "she"),
    ("Oscar", "goat", "he"), ("Ruby", "robin", "she"), ("Theo", "boy", "he"), ("Anna", "girl", "she"),
    ("Kai", "otter", "he"), ("Bella", "pony", "she"), ("Milo", "boy", "he"), ("Daisy", "cow", "she"),
    ("Rex", "young dragon", "he"), ("Poppy", "piglet", "she"), ("Felix", "cat", "he"), ("Iris", "girl", "she"),
    ("Gus", "beaver", "he"), ("Hazel", "badger", "she"), ("Arlo", "boy", "he"), ("Wren", "wren", "she"),
]
FRIENDS = [
    ("Grandma Rose", "she"), ("a wise old owl", "she"), ("a kind baker", "he"), ("her brother", "he"),
    ("a friendly dog", "he"), ("a busy ant", "she"), ("the farmer", "he"), ("a small bird", "she"),
    ("a tall giraffe", "she"), ("Uncle Ned", "he"), ("a shy deer", "she"), ("the teacher", "she"),
    ("a clever crow", "he"), ("an old fisherman", "he"), ("a cheerful bee", "she"), ("a gentle horse", "he"),
    ("a sleepy cat", "she"), ("the mail carrier", "he"), ("a tiny snail", "she"), ("a strong ox", "he"),
]
# (preposition, place, detail)
PLACES = [
    ("in", "a small village", "near the hills"), ("in", "a green forest", "full of tall pines"),
    ("in", "a quiet town", "by the sea"), ("in", "a big garden", "behind a red house"),
    ("on", "a sunny farm", "with a white fence"), ("in", "a busy city", "with many bridges"),
    ("on", "a little island", "in a blue lake"), ("in", "a warm valley", "between two mountains"),
    ("in", "an old castle", "on a windy hill"), ("in", "a snowy land", "far in the north"),
    ("in", "a meadow", "full of flowers"), ("in", "a fishing harbor", "with bright boats"),
    ("in", "a cozy cottage", "at the edge of the woods"), ("in", "a desert town", "under a huge sky"),
    ("by", "a riverside mill", "that creaked all day"),
]
OBJECTS = [
    ("red ball", "it"), ("old map", "it"), ("shiny key", "it"), ("blue kite", "it"), ("paper boat", "it"),
    ("wooden flute", "it"), ("yellow hat", "it"), ("little drum", "it"), ("glass marble", "it"),
    ("straw basket", "it"), ("silver bell", "it"), ("green scarf", "it"), ("picture book", "it"),
    ("toy train", "it"), ("lantern", "it"), ("pair of boots", "them"), ("box of crayons", "it"),
    ("spinning top", "it"), ("brass compass", "it"), ("knitted sweater", "it"), ("little telescope", "it"),
    ("jar of honey", "it"), ("warm blanket", "it"), ("music box", "it"),
]
HIDING = [
    "under the bed", "behind the big rock", "in the tall grass", "near the old well", "inside a hollow log",
    "under a pile of leaves", "on top of the shelf", "beside the pond", "in the garden shed", "under the bridge",
    "between two flower pots", "in a bird's nest", "at the bottom of the stairs", "behind the curtain",
]
WEATHER = [
    "The sun was shining", "A soft rain was falling", "The wind was blowing hard", "Snow covered the ground",
    "The sky was gray and quiet", "The air smelled of flowers", "Fog rolled over the fields",
    "Clouds raced across the sky", "It was a warm summer day", "It was a cold winter morning",
]
OPENINGS = [
    "Once upon a time", "One morning", "Long ago", "One sunny afternoon", "On a cold evening",
    "Not long ago", "One spring day", "Early one autumn morning", "Many years ago", "One rainy Tuesday",
]
FEELINGS_GOOD = ["happy", "proud", "glad", "calm", "thankful", "excited", "warm inside", "brave"]
FEELINGS_BAD = ["sad", "worried", "scared", "lonely", "grumpy", "tired", "upset", "nervous"]
SAYS = ["said", "asked", "whispered", "called", "replied", "cried", "laughed", "answered"]
ADVERBS = ["slowly", "carefully", "quickly", "quietly", "bravely", "happily", "patiently", "gently"]
FOODS = ["apples", "warm rolls", "cookies", "berries", "honey cakes", "plums", "pancakes", "cherries", "carrots"]
GAMES = ["playing hide and seek", "playing tag", "playing catch", "racing to the big tree", "jumping over puddles",
         "reading stories", "singing songs", "drawing pictures"]

MORALS = {
    "lost": [
        "Looking carefully and asking for help can find almost anything.",
        "When you lose something, stay calm and look step by step.",
        "A friend who helps you search is worth more than the thing you lost.",
    ],
    "afraid": [
        "Being brave does not mean you are not scared. It means you try anyway.",
        "Things often seem less scary when you face them with a friend.",
        "Fear gets smaller when you take one small step.",
    ],
    "share": [
        "Sharing makes a good day even better.",
        "What you give to others often comes back to you.",
        "A treat tastes sweeter when a friend has some too.",
    ],
    "build": [
        "If at first you do not succeed, try again.",
        "Patience and hard work can build wonderful things.",
        "Mistakes are how we learn to do better.",
    ],
    "honest": [
        "Telling the truth is always the right choice.",
        "Honesty keeps friends close.",
        "It is better to say sorry than to hide a mistake.",
    ],
    "explore": [
        "It is good to be curious, and wise to be careful.",
        "The world is full of wonders for those who look.",
        "Adventures are best when you know the way home.",
    ],
    "patience": [
        "Good things take time.",
        "Patience turns small seeds into tall trees.",
        "Waiting is hard, but the reward is sweet.",
    ],
    "help": [
        "Kindness is a gift that anyone can give.",
        "When we help each other, everyone wins.",
        "No one is too small to help someone else.",
    ],
}

# ---------------------------------------------------------------------------- grammar


def plant_name(seed_phrase):
    """'a sunflower seed' -> 'the sunflower seed'."""
    return "the " + seed_phrase.split(" ", 1)[1]


class Story:
    def __init__(self, rng):
        self.r = rng
        self.name, self.kind, p = rng.choice(HEROES)
        self.he = p
        self.his = {"he": "his", "she": "her"}[p]
        self.him = {"he": "him", "she": "her"}[p]
        self.He = self.he.capitalize()
        self.His = self.his.capitalize()
        self.friend, fp = rng.choice(FRIENDS)
        if self.friend.startswith(("her ", "his ")):
            self.friend = self.his + self.friend[3:]
        self.fhe = fp
        self.prep, self.place, self.detail = rng.choice(PLACES)
        self.obj, self.it = rng.choice(OBJECTS)
        self.theme = rng.choice(list(MORALS))

    def c(self, items):
        return self.r.choice(items)

    def where(self):
        return f"{self.prep} {self.place} {self.detail}"

    def the_friend(self):
        f = self.friend
        return f[0].upper() + f[1:]

    def opening(self):
        r = self.r
        form = r.randrange(4)
        if form == 0:
            s = f"{self.c(OPENINGS)}, there was a {self.kind} named {self.name} who lived {self.where()}."
        elif form == 1:
            s = f"{self.prep.capitalize()} {self.place} {self.detail}, there lived a {self.kind} called {self.name}."
        elif form == 2:
            s = f"{self.name} was a {self.kind}. {self.He} lived {self.where()}."
        else:
            s = f"{self.c(OPENINGS)}, {self.where()}, a {self.kind} named {self.name} woke up early."
        likes = self.c([
            f"{self.He} loved {self.c(GAMES)} and eating {self.c(FOODS)}.",
            f"{self.His} favorite thing in the world was a {self.obj}.",
            f"Every day {self.he} played outside until the stars came out.",
            f"{self.He} was small, but {self.he} had a big heart.",
            f"{self.He} liked to ask questions about everything.",
        ])
        return f"{s} {likes} {self.c(WEATHER)}."

    def say(self, who, text, question=False):
        verb = "asked" if question else self.c([v for v in SAYS if v != "asked"])
        if self.r.random() < 0.5:
            if text.endswith("."):
                text = text[:-1] + ","
            return f"\"{text}\" {verb} {who}."
        return f"{who[0].upper() + who[1:]} {verb}, \"{text}\""

    def problem(self):
        t = self.theme
        n, he, He, his, o, it = self.name, self.he, self.He, self.his, self.obj, self.it
        if t == "lost":
            return (f"One day, {n} could not find {his} {o}. {He} looked everywhere, but {it} "
                    f"{'were' if it == 'them' else 'was'} gone. {n} felt {self.c(FEELINGS_BAD)}.")
        if t == "afraid":
            fear = self.c(["the dark", "the deep river", "the loud thunder", "the big dog next door",
                           "the tall slide", "the old bridge", "the first day of school"])
            self.fear = fear
            return f"{n} was afraid of {fear}. Whenever {he} thought about it, {his} knees shook."
        if t == "share":
            food = self.c(FOODS)
            self.food = food
            return (f"One day, {n} found a basket of {food} by the door. It was all for {self.him}. "
                    f"Then {he} saw {self.friend}, who looked hungry and {self.c(FEELINGS_BAD)}.")
        if t == "build":
            thing = self.c(["tree house", "tall tower of blocks", "sand castle", "little boat",
                            "bird house", "snowman", "bridge of sticks", "kite"])
            self.thing = thing
            return f"{n} wanted to build a {thing}. {He} gathered everything {he} needed and began to work."
        if t == "honest":
            return (f"While playing, {n} broke the {o} that belonged to {self.friend}. "
                    f"Nobody had seen it happen. {n} felt {self.c(FEELINGS_BAD)} and did not know what to do.")
        if t == "explore":
            goal = self.c(["what was on the other side of the hill", "where the river ended",
                           "what lived in the dark cave", "who lit the lamp in the old tower",
                           "where the wild geese flew every autumn", "what was hidden in the deep woods"])
            self.goal = goal
            return (f"{n} always wondered {goal}. One morning, {he} packed {his} {o}, some {self.c(FOODS)}, "
                    f"and a little water, and set off.")
        if t == "patience":
            plant = self.c(["a sunflower seed", "an apple seed", "a tiny bean", "a pumpkin seed", "an acorn"])
            self.plant = plant
            return (f"{n} planted {plant} in the soft ground and watered it. The next morning, {he} ran to look. "
                    f"Nothing had grown. {n} felt {self.c(FEELINGS_BAD)}.")
        # help
        trouble = self.c(["was stuck in the mud", "had hurt a leg", "could not reach the apples",
                          "had lost the way home", "was carrying a heavy load", "was cold and wet"])
        self.trouble = trouble
        return f"On the way home, {n} met {self.friend}, who {trouble}."

    def dialogue(self):
        t = self.theme
        n, f = self.name, self.friend
        lines = []
        if t == "lost":
            lines.append(self.say(n, f"Have you seen my {self.obj}?", question=True))
            lines.append(self.say(f, "Let us look together. Where did you last play?"))
            lines.append(self.say(n, self.c(["By the garden, I think.", "I am not sure.", "Near the water."])))
        elif t == "afraid":
            lines.append(self.say(f, f"Why are you shaking, {n}?", question=True))
            lines.append(self.say(n, f"I am scared of {self.fear}."))
            lines.append(self.say(f, "I will stay right beside you. We can go one small step at a time."))
        elif t == "share":
            lines.append(self.say(f, "That smells so good.", question=False))
            lines.append(self.say(n, f"Would you like some of my {self.food}?", question=True))
            lines.append(self.say(f, "Oh, thank you! You are very kind."))
        elif t == "build":
            lines.append(self.say(f, "What are you making?", question=True))
            lines.append(self.say(n, f"I am building a {self.thing}, but it keeps falling down."))
            lines.append(self.say(f, "Maybe the bottom needs to be stronger."))
        elif t == "honest":
            lines.append(self.say(f, f"Where is my {self.obj}?", question=True))
            lines.append(self.say(n, self.c(["I have to tell you something.", "It was me. I am sorry.",
                                             "I broke it by accident. I am so sorry."])))
            lines.append(self.say(f, "Thank you for telling me the truth. We can fix it together."))
        elif t == "explore":
            lines.append(self.say(f, f"Where are you going, {n}?", question=True))
            lines.append(self.say(n, f"I want to find out {self.goal}."))
            lines.append(self.say(f, "Then I will come too. Two pairs of eyes see more than one."))
        elif t == "patience":
            lines.append(self.say(n, "Why is it not growing?", question=True))
            lines.append(self.say(f, "Seeds need time, sun and water. Keep caring for it, and wait."))
            lines.append(self.say(n, "I will try to be patient."))
        else:
            lines.append(self.say(n, "Do you need help?", question=True))
            lines.append(self.say(f, "Yes, please. I cannot do it alone."))
            lines.append(self.say(n, "Do not worry. I am here."))
        return " ".join(lines)

    def attempt(self):
        t = self.theme
        n, he, He, his, o = self.name, self.he, self.He, self.his, self.obj
        adv = self.c(ADVERBS)
        if t == "lost":
            first = self.c(HIDING)
            second = self.c([h for h in HIDING if h != first])
            return (f"They looked {first}, but the {o} was not there. Then {n} {adv} checked {second}. "
                    f"There it was! The {o} was safe.")
        if t == "afraid":
            return (f"{n} took a deep breath. {He} held {self.friend}'s hand and walked {adv} toward {self.fear}. "
                    f"It was not as bad as {he} had thought. Soon {he} was even smiling.")
        if t == "share":
            return (f"They sat {self.c(['under a tree', 'by the window', 'on a big rock', 'near the fire'])} "
                    f"and ate the {self.food} together. The next day, {self.friend} came back with a gift for {n}.")
        if t == "build":
            return (f"The first time, the {self.thing} fell over. The second time, it leaned to one side. "
                    f"{n} did not give up. {He} worked {adv}, made the bottom wide and strong, and tried once more. "
                    f"This time, the {self.thing} stood tall.")
        if t == "honest":
            return (f"{n} and {self.friend} worked {adv} all afternoon. They used glue and string, "
                    f"and soon the {o} looked almost new.")
        if t == "explore":
            found = self.c(["a waterfall that sparkled like glass", "a family of sleepy bats",
                            "a field of purple flowers", "an old lighthouse keeper who told them stories",
                            "a lake as still as a mirror", "a nest full of baby birds"])
            return (f"They walked {adv} along the path. The way was long, and once they almost got lost, "
                    f"but {self.friend} remembered the big rock that marked the trail. At last they found {found}. "
                    f"Before dark, they followed the trail back home.")
        if t == "patience":
            days = self.c(["Days", "Weeks", "Many mornings"])
            return (f"{days} went by. {n} watered {plant_name(self.plant)} {adv} and pulled out the weeds. "
                    f"One morning, a small green sprout poked out of the ground. "
                    f"Later it grew tall and strong, taller than {n}.")
        return (f"{n} worked {adv} until the job was done. {self.the_friend()} was safe at last "
                f"and thanked {self.him} again and again.")

    def ending(self):
        n = self.name
        feeling = self.c(FEELINGS_GOOD)
        close = self.c([
            f"That night, {n} went to bed feeling {feeling}.",
            f"{n} felt {feeling} all the way home.",
            f"From that day on, {n} and {self.friend} were the best of friends.",
            f"{n} smiled. It had been a good day after all.",
            f"When the sun went down, {n} felt {feeling} and a little bit wiser.",
        ])
        moral = self.c(MORALS[self.theme])
        lead = self.c(["The moral of the story:", "Moral:", "And so we learn:", "Remember:"])
        return f"{close}\n\n{lead} {moral}"

    def text(self):
        paragraphs = [self.opening(), self.problem() + " " + self.dialogue(), self.attempt(), self.ending()]
        return "\n\n".join(paragraphs)


def stories(seed, count):
    rng = random.Random(seed)
    return [Story(rng).text() for _ in range(count)]


def render(seed_txt=1, count_txt=600, seed_jsonl=2, count_jsonl=300):
    txt = "\n\n\n".join(stories(seed_txt, count_txt)) + "\n"
    jsonl = "".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in stories(seed_jsonl, count_jsonl))
    return txt, jsonl


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="Data", help="output directory (default Data)")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = ap.parse_args()
    txt, jsonl = render()
    outputs = {"stories.txt": txt, "stories.jsonl": jsonl}
    if args.check:
        ok = True
        for name, content in outputs.items():
            path = os.path.join(args.out, name)
            with open(path, encoding="utf-8", newline="") as f:
                same = f.read() == content
            print(f"{path}: {'identical' if same else 'DIFFERS'}")
            ok &= same
        sys.exit(0 if ok else 1)
    os.makedirs(args.out, exist_ok=True)
    for name, content in outputs.items():
        path = os.path.join(args.out, name)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(content)
        print(f"{path}: {len(content.encode('utf-8'))} bytes")


if __name__ == "__main__":
    main()
