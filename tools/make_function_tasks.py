#!/usr/bin/env python3
"""Writes Data/function-calls/: function-calling tasks over a catalogue of our own tools.

  functions.json    the catalogue: every tool definition with its domain and split
  train.jsonl       tasks whose tools are all train functions
  validation.jsonl  tasks whose tools are all validation functions
  test.jsonl        tasks whose tools are all test functions
  README.md         prose, plus the counts section this script writes between markers

A task is {"id", "messages": [one user message], "tools": [bare function definitions],
"calls": [possible-answer calls]} as Sources/Verify/Tasks.swift reads it (the reader refuses
other fields, so the domain and kind live in the id: "weather.parallel.0042"). Kinds:
simple (one tool offered, one call), multiple (2-4 distractor tools beside it), parallel
(the same function called two or three times with different arguments) and
parallel-multiple (two different functions called).

Splits are by function: each domain's functions are shuffled (fixed seed) and cut about
60 / 15 / 25 into train / validation / test, and a task offers only functions of its own
split, distractors included, so validation and test functions are never seen in training.

Every function, description and request template below was written for distill; no public
benchmark data (BFCL, APIGen, Glaive, ...) is used or copied. Plain Python 3, standard
library only, deterministic (random.Random with fixed seeds). Run from the repository root:

    python3 tools/make_function_tasks.py            # writes Data/function-calls/
    python3 tools/make_function_tasks.py --check    # regenerates in memory, compares
    python3 tools/make_function_tasks.py --verify-with .build/debug/distill
        # scores rendered right and wrong answers with `distill verify` and checks the verdicts
"""

import argparse
import calendar
import datetime
import json
import os
import random
import re
import subprocess
import sys
import tempfile

SEED = 20250611
SIZES = {"train": 2000, "validation": 300, "test": 500}
KINDS = [("simple", 0.35), ("multiple", 0.37), ("parallel", 0.20), ("parallel-multiple", 0.08)]
SPLIT_SHARE = {"validation": 0.15, "test": 0.25}  # the rest is train

NODEFAULT = object()

# ----------------------------------------------------------------------------------------
# Numbers as text

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
        "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def words(n):
    """English words for an integer with |n| < 1,000,000 ("minus" for negatives)."""
    if n < 0:
        return "minus " + words(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + words(rest))
    rest = n % 1000
    return words(n // 1000) + " thousand" + ("" if rest == 0 else (" and " if rest < 100 else " ") + words(rest))


def ordinal_digits(n):
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ordinal_words(n):
    w = words(n)
    head, sep, last = w.rpartition("-") if "-" in w.split(" ")[-1] else w.rpartition(" ")
    special = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
               "nine": "ninth", "twelve": "twelfth"}
    if last in special:
        last = special[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def number_text(v, thousands=False):
    """Digits for an int or a float (shortest repr), optionally with thousands separators."""
    if isinstance(v, int):
        return f"{v:,}" if thousands else str(v)
    s = repr(v)
    if thousands and abs(v) >= 1000:
        whole, _, frac = s.partition(".")
        s = f"{int(whole):,}" + ("." + frac if frac else "")
    return s


def standardize(s):
    """The verifier's string standardisation (Sources/Verify/FunctionCalls.swift)."""
    return "".join(c for c in s.lower() if not c.isspace() and c not in ",./-_*^")


# ----------------------------------------------------------------------------------------
# Parameters: schema, sampling, surface text, acceptable values, and deliberate mistakes


class Param:
    """One parameter of a function. A parameter with a default (or optional=True) is optional."""

    def __init__(self, name, desc, default=NODEFAULT, optional=False, mention_default=True):
        self.name, self.desc, self.default = name, desc, default
        self.required = default is NODEFAULT and not optional
        # Whether a request may mention the default value explicitly ("in Celsius").
        self.mention_default = mention_default

    def schema(self, with_desc=True):
        s = self.type_schema()
        out = {"type": s.pop("type")}
        if with_desc:
            d = self.desc
            if self.default is not NODEFAULT:
                shown = self.default if isinstance(self.default, str) else json.dumps(self.default)
                d += f" Default: {shown}."
            out["description"] = d
        out.update(s)
        if self.default is not NODEFAULT:
            out["default"] = self.default
        return out

    def sample_other(self, rng, avoid):
        for _ in range(100):
            v = self.sample(rng)
            if v != avoid:
                return v
        raise AssertionError(f"{self.name}: cannot sample a value other than {avoid!r}")

    def acceptable(self, v):
        return [v]


class Int(Param):
    """An integer. `unit` lists formats ("{} days" or ("{} day", "{} days")) for the value."""

    def __init__(self, name, desc, lo, hi, unit=None, wordy=0.3, choices=None, names=None, plain=False,
                 name_format=None, **kw):
        super().__init__(name, desc, **kw)
        self.lo, self.hi, self.unit, self.wordy, self.choices = lo, hi, unit, wordy, choices
        # names: value -> words for {param:name} ("hexagon"); name_format for values without one.
        self.names, self.name_format, self.plain = names or {}, name_format, plain

    def type_schema(self):
        return {"type": "integer"}

    def sample(self, rng):
        return rng.choice(self.choices) if self.choices else rng.randrange(self.lo, self.hi + 1)

    def surface(self, v, rng, mod=None, ctx=None):
        if mod == "ord":
            return ordinal_words(v) if 0 < v <= 30 and rng.random() < self.wordy else ordinal_digits(v)
        if mod == "name":
            if v in self.names:
                return rng.choice(self.names[v])
            return self.name_format.format(words(v) if rng.random() < 0.5 else str(v))
        if self.plain:
            return str(v)
        small = abs(v) <= 100 or (v % 100 == 0 and abs(v) < 100000)
        if small and rng.random() < self.wordy:
            t = words(v)
        else:
            t = number_text(v, thousands=abs(v) >= 10000 or (abs(v) >= 1000 and rng.random() < 0.4))
            if v < 0 and self.wordy and rng.random() < 0.3:
                t = "minus " + t[1:]
        return with_unit(t, v, ctx if self.unit == "ctx" else self.unit, rng)

    def wrong(self, v, rng):
        return v + 1 if v < self.hi else v - 1

    def mistype(self, v):
        return float(v)  # 5.0 for an integer parameter


class Num(Param):
    """A number (JSON schema "number"): multiples of `step` in lo..hi."""

    def __init__(self, name, desc, lo, hi, step=1, unit=None, wordy=0.2, thousands=False, **kw):
        super().__init__(name, desc, **kw)
        self.lo, self.hi, self.step, self.unit, self.wordy, self.thousands = lo, hi, step, unit, wordy, thousands
        self.places = len(repr(float(step)).split(".")[1].rstrip("0")) if step < 1 else 0
        assert abs(lo / step - round(lo / step)) < 1e-9 and lo < hi, f"{name}: lo {lo} is not a multiple of {step}"

    def type_schema(self):
        return {"type": "number"}

    def sample(self, rng):
        k = rng.randrange(round(self.lo / self.step), round(self.hi / self.step) + 1)
        return tidy(k * self.step, self.places)

    def surface(self, v, rng, mod=None, ctx=None):
        if isinstance(v, int) and (abs(v) <= 100 or v % 100 == 0) and rng.random() < self.wordy:
            t = words(v)
        elif isinstance(v, float) and 1 <= v < 20 and v * 2 == int(v * 2) and rng.random() < self.wordy:
            t = words(int(v)) + " and a half"
        else:
            t = number_text(v, thousands=self.thousands and rng.random() < 0.6)
            if v < 0 and self.wordy and rng.random() < 0.25:
                t = "minus " + t[1:]
        return with_unit(t, v, ctx if self.unit == "ctx" else self.unit, rng)

    def acceptable(self, v):
        return [v, float(v)] if isinstance(v, int) else [v]

    def wrong(self, v, rng):
        return tidy(v + 1, self.places) if v + 1 <= self.hi else tidy(v - 1, self.places)

    def mistype(self, v):
        return number_text(v)  # "5" for a number parameter


def tidy(x, places):
    x = round(x, places)
    return int(x) if x == int(x) else x


def with_unit(text, v, unit, rng):
    if not unit:
        return text
    if any(c.isalpha() for c in text):  # "four °C", never "four°C" or "$four"
        spaced = [f for f in unit if (f[1] if isinstance(f, tuple) else f).startswith("{} ")]
        unit = spaced or unit
    fmt = rng.choice(unit)
    if isinstance(fmt, tuple):
        fmt = fmt[0] if v == 1 else fmt[1]
    return fmt.format(text)


class Item:
    """A value of a string pool: canonical value, every acceptable spelling, surface forms."""

    def __init__(self, value, accept=None, surfaces=None):
        self.value = value
        self.accept = accept or [value]
        self.surfaces = surfaces or [value]


class Str(Param):
    """A string drawn from a pool of Items (or plain strings). `quote` wraps free text in quotes."""

    def __init__(self, name, desc, pool, quote=False, **kw):
        super().__init__(name, desc, **kw)
        self.items = [p if isinstance(p, Item) else Item(p) for p in pool]
        self.by_value = {i.value: i for i in self.items}
        self.quote = quote
        if not self.required and self.default is not NODEFAULT and self.default not in self.by_value:
            self.by_value[self.default] = Item(self.default)

    def type_schema(self):
        return {"type": "string"}

    def sample(self, rng):
        return rng.choice(self.items).value

    def surface(self, v, rng, mod=None, ctx=None):
        t = rng.choice(self.by_value[v].surfaces)
        if self.quote:
            q = rng.choice(['"{}"', "\u201c{}\u201d"] + ([] if "'" in t else ["'{}'"]))
            t = q.format(t)
        return t

    def acceptable(self, v):
        return list(self.by_value[v].accept)

    def wrong(self, v, rng):
        taken = {standardize(a) for a in self.acceptable(v)}
        others = [i.value for i in self.items if not taken & {standardize(a) for a in i.accept}]
        return rng.choice(others) if others else v + " extra"

    def mistype(self, v):
        return 7


class Enum(Param):
    """A string restricted to `options` (value -> surface forms); the schema lists the values."""

    def __init__(self, name, desc, options, **kw):
        super().__init__(name, desc, **kw)
        self.options = options

    def type_schema(self):
        return {"type": "string", "enum": list(self.options)}

    def sample(self, rng):
        return rng.choice(list(self.options))

    def surface(self, v, rng, mod=None, ctx=None):
        return rng.choice(self.options[v])

    def wrong(self, v, rng):
        return rng.choice([o for o in self.options if o != v])

    def mistype(self, v):
        return 1


class Bool(Param):
    """A boolean; its surface is a phrase saying which value (`yes` or `no` phrases)."""

    def __init__(self, name, desc, yes, no, **kw):
        super().__init__(name, desc, **kw)
        self.yes, self.no = yes, no

    def type_schema(self):
        return {"type": "boolean"}

    def sample(self, rng):
        return rng.randrange(2) == 1

    def surface(self, v, rng, mod=None, ctx=None):
        return rng.choice(self.yes if v else self.no)

    def wrong(self, v, rng):
        return not v

    def mistype(self, v):
        return "true" if v else "false"


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


class Date(Param):
    """A date, YYYY-MM-DD in the call; written several ways in the request."""

    def __init__(self, name, desc, years=(2023, 2027), **kw):
        super().__init__(name, desc, **kw)
        self.years = years

    def type_schema(self):
        return {"type": "string"}

    def sample(self, rng):
        y = rng.randrange(self.years[0], self.years[1] + 1)
        m = rng.randrange(1, 13)
        d = rng.randrange(1, calendar.monthrange(y, m)[1] + 1)
        return f"{y:04d}-{m:02d}-{d:02d}"

    def surface(self, v, rng, mod=None, ctx=None):
        y, m, d = (int(x) for x in v.split("-"))
        return rng.choice([
            v, v, f"{MONTHS[m - 1]} {d}, {y}", f"{d} {MONTHS[m - 1]} {y}", f"{MONTHS[m - 1]} {ordinal_digits(d)}, {y}",
            f"the {ordinal_digits(d)} of {MONTHS[m - 1]} {y}", f"{MONTHS[m - 1][:3]} {d} {y}"])

    def wrong(self, v, rng):
        return (datetime.date.fromisoformat(v) + datetime.timedelta(days=1)).isoformat()

    def mistype(self, v):
        return int(v.replace("-", ""))


class Time(Param):
    """A time of day, 24-hour HH:MM in the call; hours lo..hi."""

    def __init__(self, name, desc, hours=(6, 21), **kw):
        super().__init__(name, desc, **kw)
        self.hours = hours

    def type_schema(self):
        return {"type": "string"}

    def sample(self, rng):
        return f"{rng.randrange(self.hours[0], self.hours[1] + 1):02d}:{rng.choice([0, 15, 30, 45]):02d}"

    def surface(self, v, rng, mod=None, ctx=None):
        h, m = (int(x) for x in v.split(":"))
        h12 = h % 12 or 12
        ampm = "am" if h < 12 else "pm"
        forms = [v, v, f"{h12}:{m:02d} {ampm}", f"{h12}:{m:02d} {ampm.upper()}"]
        if m == 0:
            forms.append(f"{h12} {ampm}")
        return rng.choice(forms)

    def wrong(self, v, rng):
        h, m = (int(x) for x in v.split(":"))
        return f"{(h + 1) % 24:02d}:{m:02d}"

    def mistype(self, v):
        return int(v.replace(":", ""))


class List(Param):
    """An array of `item` values (item is a Param used for its type, sampling and surface)."""

    def __init__(self, name, desc, item, lo, hi, distinct=True, brackets=False, key=None, **kw):
        super().__init__(name, desc, **kw)
        self.item, self.lo, self.hi, self.distinct = item, lo, hi, distinct
        # brackets: always written as [a, b, c] (two lists in one request); key: what must differ.
        self.brackets, self.key = brackets, key or (lambda x: x)

    def type_schema(self):
        return {"type": "array", "items": self.item.schema(with_desc=isinstance(self.item, Obj))}

    def sample(self, rng):
        n = rng.randrange(self.lo, self.hi + 1)
        out = []
        while len(out) < n:
            v = self.item.sample(rng)
            if not (self.distinct and self.key(v) in [self.key(x) for x in out]):
                out.append(v)
        return out

    def surface(self, v, rng, mod=None, ctx=None):
        if isinstance(self.item, Obj):
            parts = [self.item.surface(x, rng) for x in v]
        elif isinstance(self.item, (Int, Num)):
            parts = [number_text(x) for x in v]
        else:
            parts = [self.item.surface(x, rng) for x in v]
        style = 0 if self.brackets or mod == "br" else rng.randrange(4)
        if style == 0 and not isinstance(self.item, Obj):
            return "[" + ", ".join(parts) + "]"
        if style == 1 and not isinstance(self.item, Obj):
            return ", ".join(parts)
        if len(parts) == 1:
            return parts[0]
        return ", ".join(parts[:-1]) + ("," if style == 3 and len(parts) > 2 else "") + " and " + parts[-1]

    def acceptable(self, v):
        if isinstance(self.item, Obj):
            return [[self.item.acceptable(x)[0] for x in v]]
        return [list(v)]

    def wrong(self, v, rng):
        return v[:-1] if len(v) > 1 else v + [self.item.sample_other(rng, v[0])]

    def mistype(self, v):
        return ", ".join(str(x) for x in v)


class Obj(Param):
    """A nested object of sub-parameters; `render(value, rng)` writes it into the request and
    `sampler(rng)` may replace independent sampling (for keys that must agree)."""

    def __init__(self, name, desc, props, render, sampler=None, **kw):
        super().__init__(name, desc, **kw)
        self.props, self.render, self.sampler = props, render, sampler

    def type_schema(self):
        return {"type": "object", "properties": {p.name: p.schema() for p in self.props},
                "required": [p.name for p in self.props if p.required]}

    def sample(self, rng):
        if self.sampler:
            return self.sampler(rng)
        return {p.name: p.sample(rng) for p in self.props}

    def surface(self, v, rng, mod=None, ctx=None):
        return self.render(v, rng)

    def acceptable(self, v):
        out = {}
        for p in self.props:
            if p.name in v:
                out[p.name] = p.acceptable(v[p.name])
            else:
                out[p.name] = ([] if p.default is NODEFAULT else p.acceptable(p.default)) + [""]
        return [out]

    def wrong(self, v, rng):
        p = self.props[0]
        return {**v, p.name: p.wrong(v[p.name], rng)}

    def mistype(self, v):
        return json.dumps(v)


# ----------------------------------------------------------------------------------------
# Functions and their requests
#
# A template is a request with {param} for a value's surface text ({param:ord} for an
# ordinal), [param: text] for a fragment that appears only when the optional parameter is
# mentioned, and {param#2} (in `par` templates) for the second call's value of the varied
# parameter. A template may be (text, {param: value}) when its words fix a value ("square
# root" fixes n = 2). Every required parameter must appear in every template.

TOKEN = re.compile(r"\{(\w+)(#2)?(?::(\w+))?\}")
BRACKET = re.compile(r"\[(\w+):([^\[\]]*)\]")
FIRST_PERSON = {"i", "i'm", "i'd", "i've", "i'll"}


class Fn:
    def __init__(self, domain, name, desc, params, templates, par=None, alike=None, differ=(), ascending=(),
                 fix=None, ctx_units=None):
        self.domain, self.name, self.desc, self.params = domain, name, desc, params
        self.by_name = {p.name: p for p in params}
        self.templates = [t if isinstance(t, tuple) else (t, {}) for t in templates]
        self.par_param, self.par_templates = (par[0], [t if isinstance(t, tuple) else (t, {}) for t in par[1]]) \
            if par else (None, [])
        self.alike, self.differ, self.ascending, self.fix = alike, differ, ascending, fix
        self.ctx_units = ctx_units  # one unit format per request for Num(unit="ctx") parameters
        self.split = None
        for text, fixed in self.templates:
            self._check(text, fixed, paired=False)
        for text, fixed in self.par_templates:
            self._check(text, fixed, paired=True)

    def _check(self, text, fixed, paired):
        where = f"{self.name}: template {text!r}"
        inside = {m.group(1) for m in BRACKET.finditer(text)}
        for m in BRACKET.finditer(text):
            p = self.by_name.get(m.group(1))
            assert p is not None and not p.required, f"{where}: [{m.group(1)}: ...] names no optional parameter"
            assert "{" + m.group(1) in m.group(2), f"{where}: fragment for {m.group(1)} does not use it"
        names = {m.group(1) for m in TOKEN.finditer(text)}
        assert names <= set(self.by_name), f"{where}: unknown {names - set(self.by_name)}"
        assert set(fixed) <= set(self.by_name), f"{where}: fixes unknown {set(fixed) - set(self.by_name)}"
        missing = [p.name for p in self.params if p.required and p.name not in names and p.name not in fixed]
        assert not missing, f"{where}: required {missing} not in the text"
        twos = {m.group(1) for m in TOKEN.finditer(text) if m.group(2)}
        assert twos == ({self.par_param} if paired else set()), f"{where}: #2 tokens {twos}"
        assert not (inside & set(fixed)), f"{where}: a fixed parameter in a fragment"

    def definition(self):
        return {"name": self.name, "description": self.desc,
                "parameters": {"type": "object", "properties": {p.name: p.schema() for p in self.params},
                               "required": [p.name for p in self.params if p.required]}}

    # -- one call's values

    def draw(self, rng, template):
        """Values and the set of mentioned parameters for one call written with `template`."""
        text, fixed = template
        outside = {m.group(1) for m in TOKEN.finditer(BRACKET.sub("", text))}
        inside = {m.group(1) for m in BRACKET.finditer(text)}
        for _ in range(200):
            vals, mentioned = {}, set()
            for p in self.params:
                if p.name in fixed:
                    vals[p.name] = fixed[p.name]
                    mentioned.add(p.name)
                elif p.required or p.name in outside:
                    vals[p.name] = p.sample(rng)
                    mentioned.add(p.name)
                elif p.name in inside and rng.random() < 0.45:
                    if p.default is NODEFAULT or (p.mention_default and rng.random() < 0.15):
                        vals[p.name] = p.sample(rng)
                    else:
                        vals[p.name] = p.sample_other(rng, p.default)
                    mentioned.add(p.name)
                else:
                    vals[p.name] = None if p.default is NODEFAULT else p.default
            if self.fix:
                self.fix(vals, rng, set(fixed))
            if self.valid(vals):
                return vals, mentioned
        raise AssertionError(f"{self.name}: cannot draw values for {text!r}")

    def valid(self, vals):
        known = lambda a, b: vals[a] is not None and vals[b] is not None
        return all(vals[a] != vals[b] for a, b in self.differ) and \
            all(vals[a] < vals[b] for a, b in self.ascending if known(a, b))

    def expected(self, vals, mentioned):
        """The call in possible-answer form."""
        args = {}
        for p in self.params:
            if p.name in mentioned:
                acc = p.acceptable(vals[p.name])
                if not p.required and p.default is not NODEFAULT and vals[p.name] == p.default:
                    acc = acc + [""]
            else:
                acc = ([] if p.default is NODEFAULT else p.acceptable(p.default)) + [""]
            args[p.name] = acc
        return {self.name: args}

    def render(self, text, vals, mentioned, rng, vals2=None):
        text = BRACKET.sub(lambda m: m.group(2) if m.group(1) in mentioned else "", text)
        text = re.sub(r" +([,.?!;:])", r"\1", re.sub(r" {2,}", " ", text)).strip()

        ctx = [rng.choice(self.ctx_units)] if self.ctx_units else None

        def value(m):
            name, two, mod = m.groups()
            return self.by_name[name].surface((vals2 if two else vals)[name], rng, mod, ctx)

        return TOKEN.sub(value, text)


def first_word_is_common(template):
    """Whether a request written with `template` may start lowercase after a connector."""
    head = template.lstrip()
    if not head or not head[0].isalpha():
        return False
    word = head.split(" ")[0].rstrip(",")
    return word.lower() not in FIRST_PERSON | {"newton's"} and not any(c.isupper() for c in word[1:])


# ----------------------------------------------------------------------------------------
# Value pools (written for this catalogue)


def city(name, country, state=None):
    accept = [name, f"{name}, {country}"]
    if state:
        accept += [f"{name}, {state[0]}", f"{name}, {state[1]}"]
    surfaces = [name, name, name, f"{name}, {country}" if not state else f"{name}, {state[0]}"]
    return Item(name, accept, surfaces)


CITIES = [
    city("Paris", "France"), city("Rome", "Italy"), city("Madrid", "Spain"), city("Berlin", "Germany"),
    city("Lisbon", "Portugal"), city("Vienna", "Austria"), city("Oslo", "Norway"), city("Stockholm", "Sweden"),
    city("Helsinki", "Finland"), city("Dublin", "Ireland"), city("Prague", "Czech Republic"),
    city("Warsaw", "Poland"), city("Athens", "Greece"), city("Cairo", "Egypt"), city("Nairobi", "Kenya"),
    city("Lagos", "Nigeria"), city("Tokyo", "Japan"), city("Seoul", "South Korea"), city("Osaka", "Japan"),
    city("Mumbai", "India"), city("Bangkok", "Thailand"), city("Sydney", "Australia"),
    city("Auckland", "New Zealand"), city("Toronto", "Canada"), city("Vancouver", "Canada"),
    city("Chicago", "USA", ("IL", "Illinois")), city("Boston", "USA", ("MA", "Massachusetts")),
    city("Denver", "USA", ("CO", "Colorado")), city("Seattle", "USA", ("WA", "Washington")),
    city("Austin", "USA", ("TX", "Texas")), city("Mexico City", "Mexico"), city("Lima", "Peru"),
    city("Buenos Aires", "Argentina"), city("Santiago", "Chile"), city("Istanbul", "Turkey"),
    city("Dubai", "United Arab Emirates"), city("Edinburgh", "United Kingdom"), city("Barcelona", "Spain"),
    city("Munich", "Germany"), city("Zurich", "Switzerland"), city("Amsterdam", "Netherlands"),
    city("Copenhagen", "Denmark"), city("Reykjavik", "Iceland"), city("Cape Town", "South Africa"),
    city("Marrakesh", "Morocco"), city("Hanoi", "Vietnam"), city("Manila", "Philippines"),
    city("Montreal", "Canada"), city("Kyoto", "Japan"), city("Porto", "Portugal"),
]
CITY_NAMES = [c.value for c in CITIES]
COUNTRIES = [
    "France", "Japan", "Brazil", "Canada", "Kenya", "India", "Norway", "Mexico", "Egypt", "Australia", "Germany",
    "Peru", "Vietnam", "Italy", "Chile", "Ireland", "Thailand", "Morocco", "Poland", "Argentina", "Sweden", "Spain",
    "Portugal", "Greece", "New Zealand", "South Korea", "Turkey", "Nigeria", "Iceland", "Finland", "Colombia",
    "Indonesia", Item("United States", ["United States", "USA", "United States of America", "US"],
                      ["the United States", "the US", "the USA"]),
    Item("United Kingdom", ["United Kingdom", "UK", "Great Britain"], ["the United Kingdom", "the UK"]),
]
CURRENCIES = {
    "USD": ["US dollars", "USD", "American dollars"], "EUR": ["euros", "EUR"],
    "GBP": ["British pounds", "pounds sterling", "GBP"], "JPY": ["Japanese yen", "yen", "JPY"],
    "CHF": ["Swiss francs", "CHF"], "CAD": ["Canadian dollars", "CAD"], "AUD": ["Australian dollars", "AUD"],
    "INR": ["Indian rupees", "INR"], "BRL": ["Brazilian reais", "BRL"], "MXN": ["Mexican pesos", "MXN"],
    "SEK": ["Swedish kronor", "SEK"], "NOK": ["Norwegian kroner", "NOK"], "CNY": ["Chinese yuan", "CNY"],
    "KRW": ["South Korean won", "KRW"], "ZAR": ["South African rand", "ZAR"],
}
CURRENCY_POOL = [Item(code, [code], names) for code, names in CURRENCIES.items()]
LANGUAGES = {"French": "fr", "Spanish": "es", "German": "de", "Italian": "it", "Portuguese": "pt",
             "Japanese": "ja", "Chinese": "zh", "Korean": "ko", "Dutch": "nl", "Swedish": "sv", "Turkish": "tr",
             "Polish": "pl", "Arabic": "ar", "Hindi": "hi", "Greek": "el", "English": "en"}
LANGUAGE_POOL = [Item(name, [name, code], [name]) for name, code in LANGUAGES.items()]
TEXTS = [
    "The early train was late again this morning",
    "Fresh bread smells better than anything else",
    "Our team finished the project two days ahead of schedule",
    "Please remember to water the plants on Friday",
    "A quiet library is the best place to think",
    "The river rose quickly after the storm",
    "She painted the fence blue and the door yellow",
    "Never trust a map drawn on a napkin",
    "The museum opens at nine and closes at five",
    "Every small step still moves you forward",
    "My neighbour grows tomatoes on his balcony",
    "The meeting has been moved to the large room upstairs",
    "Bright stars filled the sky above the desert",
    "He forgot his umbrella and got soaked on the way home",
    "Learning a new language takes patience and practice",
    "The cat slept on the warm windowsill all afternoon",
    "Tickets for the concert sold out within an hour",
    "Cold tea is still better than no tea at all",
    "The bridge will be closed for repairs next week",
    "A good recipe needs simple ingredients and care",
    "Wind turbines turned slowly on the distant hills",
    "The children built a snowman in the park",
    "Send the report to the whole team before noon",
    "Old photographs fade if you leave them in the sun",
    "The bakery on the corner sells the best croissants",
    "Never leave a candle burning in an empty room",
    "The mountain trail was steep but worth the view",
    "Our flight was delayed by three hours",
    "Reading before bed helps me fall asleep",
    "The printer on the second floor is out of paper",
]
PALINDROMES = ["racecar", "level", "rotor", "Never odd or even", "Step on no pets", "Was it a car or a cat I saw",
               "kayak", "refer", "noon", "stats", "madam", "civic", "garden", "window", "planet", "river"]
WORDS = ["happy", "quick", "bright", "cold", "brave", "calm", "large", "quiet", "smart", "strong", "tired", "clever",
         "ancient", "gentle", "fast", "rich", "simple", "angry", "beautiful", "difficult", "ocean", "journey",
         "harvest", "window", "garden", "silver", "whisper", "thunder", "lantern", "meadow"]
ANAGRAM_PAIRS = [("listen", "silent"), ("evil", "vile"), ("night", "thing"), ("dusty", "study"),
                 ("cat", "act"), ("heart", "earth"), ("lemon", "melon"), ("stone", "notes"), ("apple", "paper"),
                 ("river", "liver"), ("angel", "glean"), ("below", "elbow"), ("table", "bleat"), ("cold", "clod")]
TICKERS = {"AAPL": "Apple", "MSFT": "Microsoft", "GOOGL": "Alphabet", "AMZN": "Amazon", "NVDA": "Nvidia",
           "TSLA": "Tesla", "IBM": "IBM", "INTC": "Intel", "ORCL": "Oracle", "NFLX": "Netflix", "KO": "Coca-Cola",
           "PEP": "PepsiCo", "DIS": "Disney", "NKE": "Nike", "JPM": "JPMorgan", "WMT": "Walmart"}
TICKER_POOL = [Item(t, [t], [t, t, f"{n} ({t})", f"{t} ({n})"] if n != t else [t]) for t, n in TICKERS.items()]
CRYPTO = {"BTC": ["bitcoin", "BTC", "Bitcoin (BTC)"], "ETH": ["ether", "ETH", "Ethereum (ETH)"],
          "SOL": ["Solana", "SOL"], "ADA": ["Cardano", "ADA"], "DOGE": ["Dogecoin", "DOGE"], "XRP": ["XRP"]}
ELEMENTS = [("hydrogen", "H"), ("helium", "He"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"),
            ("sodium", "Na"), ("magnesium", "Mg"), ("aluminium", "Al"), ("silicon", "Si"), ("sulfur", "S"),
            ("chlorine", "Cl"), ("potassium", "K"), ("calcium", "Ca"), ("iron", "Fe"), ("copper", "Cu"),
            ("zinc", "Zn"), ("silver", "Ag"), ("tin", "Sn"), ("gold", "Au"), ("mercury", "Hg"), ("lead", "Pb"),
            ("uranium", "U"), ("neon", "Ne"), ("argon", "Ar")]
ELEMENT_POOL = [Item(n, [n, s] + (["aluminum"] if n == "aluminium" else []), [n, n, s]) for n, s in ELEMENTS]
FOODS = ["apple", "banana", "brown rice", "oats", "almonds", "chicken breast", "salmon", "broccoli", "lentils",
         "whole milk", "egg", "avocado", "spinach", "sweet potato", "tofu", "greek yogurt", "cheddar cheese",
         "peanut butter", "quinoa", "orange"]
INGREDIENTS = ["chicken", "rice", "garlic", "onion", "tomato", "basil", "spinach", "mushrooms", "potatoes",
               "carrots", "lentils", "chickpeas", "eggs", "cheese", "lemon", "ginger", "tofu", "pasta", "beans",
               "peppers"]
PEOPLE = ["Ana", "Marco", "Priya", "Tom", "Lena", "Omar", "Yuki", "Sara", "David", "Ines", "Kofi", "Mei",
          "Jonas", "Carla", "Ravi", "Nora"]
EVENT_TITLES = ["Team sync", "Dentist appointment", "Project review", "Lunch with Sara", "Budget planning",
                "Yoga class", "Design workshop", "Parent-teacher meeting", "Quarterly report", "Book club",
                "Car service", "Interview with a candidate", "Sprint planning", "Piano lesson"]
REMINDERS = ["call the plumber", "take the medication", "pay the electricity bill", "submit the timesheet",
             "buy a birthday present for Lena", "water the plants", "renew the passport", "back up the laptop",
             "book the train tickets", "send the invoice to the client", "pick up the dry cleaning",
             "check the oven"]
REGIONS = ["Florida", "Bavaria", "Queensland", "British Columbia", "Normandy", "Hokkaido", "Texas", "Scotland",
           "Catalonia", "Kerala", "Patagonia", "Tasmania", "Ontario", "Andalusia"]
RESORTS = ["Zermatt", "Whistler", "Chamonix", "Niseko", "Aspen", "Verbier", "Kitzbuhel", "Lake Louise",
           "Cortina", "Val Thorens"]
COASTS = ["Brittany coast", "Cape Cod", "Gold Coast", "Algarve coast", "Amalfi coast", "Big Sur", "Cornwall coast",
          "Great Barrier Reef", "Outer Banks", "Costa Brava"]
MOVIES = ["The Glass Orchard", "Northern Lights Express", "A Map of Quiet Places", "The Last Lighthouse Keeper",
          "Seven Rivers Deep", "Paper Moons", "The Clockmaker's Daughter", "Midnight at the Salt Flats",
          "Harbor of Echoes", "The Winter Garden Trial"]
BOOKS = ["The Silent Cartographer", "Letters from the Orchard", "A Short History of Tomorrow", "Salt and Cedar",
         "The Ninth Bridge", "Songs of the Lowlands", "The Patient Engineer", "Under the Copper Sky",
         "The Borrowed Summer", "Notes on Falling Water"]
AUTHORS = ["Mara Ellison", "Tobias Wren", "Lucia Ferrand", "Henrik Solberg", "Amara Okafor", "Jonah Pike",
           "Keiko Tanabe", "Rosa Almeida"]
ZIPS = ["10001", "94103", "60614", "02139", "73301", "98101", "30303", "80202", "33101", "19104"]
IPS = [f"{a}.{b}" for a in ("192.0.2", "198.51.100", "203.0.113") for b in (7, 14, 23, 42, 77, 105, 150, 201)]
HOODS = {"Paris": ["Le Marais", "Montmartre", "Belleville"], "Rome": ["Trastevere", "Monti", "Testaccio"],
         "Tokyo": ["Shibuya", "Shinjuku", "Asakusa"], "Chicago": ["Wicker Park", "Pilsen", "Lincoln Park"],
         "Barcelona": ["Gracia", "El Born", "Poblenou"], "Lisbon": ["Alfama", "Chiado", "Belem"],
         "Berlin": ["Kreuzberg", "Mitte", "Neukolln"], "Seoul": ["Hongdae", "Itaewon", "Gangnam"]}

# Units as the requests write them ("{}" is the number; a pair is singular, plural).
U_LEN = [("{} cm", "{} cm"), ("{} m", "{} m"), ("{} inch", "{} inches"), ("{} foot", "{} feet"), ("{} mm", "{} mm"),
         ("{} unit", "{} units"), "{}"]
U_KG = ["{} kg", ("{} kilogram", "{} kilograms"), ("{} kilo", "{} kilos")]
U_MPS = ["{} m/s", ("{} meter per second", "{} meters per second"), ("{} metre per second", "{} metres per second")]
U_M = ["{} m", ("{} meter", "{} meters"), ("{} metre", "{} metres")]
U_S = ["{} s", ("{} second", "{} seconds"), ("{} sec", "{} secs")]
U_V = ["{} V", ("{} volt", "{} volts")]
U_OHM = ["{} ohms", "{} Ω", ("{} ohm", "{} ohms")]
U_A = ["{} A", ("{} amp", "{} amps"), ("{} ampere", "{} amperes")]
U_HZ = ["{} Hz", "{} hertz"]
U_DEG = [("{} degree", "{} degrees"), "{}°"]
U_USD = ["${}", "{} dollars", "{} USD"]
U_PCT = ["{}%", "{} percent", "{} per cent"]
U_YEARS = [("{} year", "{} years")]
U_MONTHS = [("{} month", "{} months")]
U_DAYS = [("{} day", "{} days")]
U_HOURS = [("{} hour", "{} hours")]
U_MIN = [("{} minute", "{} minutes"), "{} min"]
U_CELSIUS = [("{} degree Celsius", "{} degrees Celsius"), "{}°C", "{} °C"]
U_KELVIN = ["{} K", "{} kelvin"]
U_M3 = ["{} m³", ("{} cubic meter", "{} cubic meters")]


def roman(n):
    out = ""
    for value, letters in [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"),
                           (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]:
        while n >= value:
            out, n = out + letters, n - value
    return out


ROMANS = [roman(n) for n in (4, 9, 14, 19, 27, 40, 44, 58, 90, 99, 145, 400, 499, 512, 944, 1066, 1492, 1776, 1999,
                             2024, 2388, 3999)]
FOREIGN = ["Je voudrais un billet pour Lyon, s'il vous plait", "Donde esta la estacion de tren mas cercana",
           "Ich habe meinen Schluessel im Buero vergessen", "Vorrei prenotare un tavolo per due persone",
           "O museu fecha as seis horas da tarde", "De trein naar Utrecht vertrekt over tien minuten",
           "Jag tycker mycket om att laesa pa kvallen", "Bu aksam sinemaya gitmek ister misin",
           "Dzisiaj jest bardzo zimno na dworze", "La biblioteca abre a las nueve de la manana",
           "Il pleut depuis trois jours sans arret", "Wir treffen uns morgen vor dem Bahnhof"]
TYPO_TEXTS = ["I recieved the pakage yesterday", "Their going to the libary tomorow", "The wether was realy nice",
              "Please seperate the documants by date", "We definately need more informaton",
              "The comittee will meet on wensday", "She bougth a new umbrela", "Acommodation is included in the prise",
              "Tommorow we will visit the museum", "I beleive the answer is corect"]
EMAIL_TEXTS = ["Write to ana.lopez@example.com or call the front desk",
               "Questions go to support@example.org, invoices to billing@example.org",
               "My old address was tom99@example.net but now I use tom.reed@example.com",
               "Contact the organisers at team@example.com before Friday",
               "Send your CV to jobs@example.org and copy hr.lead@example.org",
               "Reach Priya at priya.k@example.net or Omar at omar@example.com",
               "No email here, just call me tomorrow", "The newsletter comes from news@example.com every Monday"]
PARAGRAPHS = [". ".join(TEXTS[i:i + 3]) + "." for i in range(0, len(TEXTS) - 2, 2)]
LOCATIONS = ["Room 4B", "the main office", "Cafe Lumen", "the library", "the community hall", "the video call",
             "the north meeting room", "the gym"]
EVENT_NAMES = ["the wedding", "my birthday", "the product launch", "graduation", "the marathon", "the conference",
               "our vacation", "the exam"]
TIMEZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "America/Los_Angeles",
             "Europe/London", "Asia/Kolkata", "Africa/Nairobi", "America/Sao_Paulo", "Asia/Singapore",
             "Europe/Berlin", "Pacific/Auckland"]
CUISINES = ["Thai", "Italian", "Japanese", "Mexican", "Indian", "vegan", "Lebanese", "Ethiopian", "Korean", "Greek"]
GROCERIES = INGREDIENTS + ["apple", "pear", "plum", "fig", "kiwi", "mango"]


def city_param(name="city", desc="City name, optionally with its country, e.g. \"Lyon\" or \"Lyon, France\".",
               **kw):
    return Str(name, desc, CITIES, **kw)


def temp_unit(name="unit"):
    return Enum(name, "Temperature unit for the result.",
                {"celsius": ["Celsius", "°C", "degrees Celsius"],
                 "fahrenheit": ["Fahrenheit", "°F", "degrees Fahrenheit"]},
                default="celsius")


def point(name, desc):
    def render(v, rng):
        x, y = number_text(v["x"]), number_text(v["y"])
        return rng.choice([f"({x}, {y})", f"({x}, {y})", f"({x},{y})", f"(x={x}, y={y})"])
    return Obj(name, desc,
               [Num("x", "x coordinate.", -20, 20, 0.5, wordy=0), Num("y", "y coordinate.", -20, 20, 0.5, wordy=0)],
               render)


def coordinates(name="location"):
    def render(v, rng):
        lat, lon = v["latitude"], v["longitude"]
        style = rng.randrange(3)
        if style == 0:
            return f"{number_text(lat)}, {number_text(lon)}"
        if style == 1:
            return f"latitude {number_text(lat)}, longitude {number_text(lon)}"
        ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
        return f"{number_text(abs(lat))}°{ns}, {number_text(abs(lon))}°{ew}"
    return Obj(name, "Geographic coordinates in decimal degrees (south and west negative).",
               [Num("latitude", "Latitude, -90 to 90.", -60, 70, 0.01),
                Num("longitude", "Longitude, -180 to 180.", -180, 180, 0.01)],
               render)


def convert(name, desc, units, value, templates, par_templates=None, alike=None, extra=()):
    """A unit conversion: value, from_unit, to_unit (enum), the units written as `units` says."""
    params = [value, Enum("from_unit", "Unit of the given value.", units),
              Enum("to_unit", "Unit to convert to.", units)] + list(extra)
    par = ("value", par_templates) if par_templates else None
    return Fn("conversion", name, desc, params, templates, par=par, alike=alike, differ=[("from_unit", "to_unit")])


CONVERT_TEMPLATES = [
    "Convert {value} {from_unit} to {to_unit}.", "How many {to_unit} is {value} {from_unit}?",
    "{value} {from_unit} in {to_unit}?", "What's {value} {from_unit} expressed in {to_unit}?",
    "Into {to_unit}, please: {value} {from_unit}.", "Could you turn {value} {from_unit} into {to_unit}?"]
CONVERT_PAR = ["Convert {value} and {value#2} {from_unit} to {to_unit}.",
               "What are {value} {from_unit} and {value#2} {from_unit} in {to_unit}?"]


def fix_triangle(vals, rng, fixed):
    a, b, c = sorted([vals["side_a"], vals["side_b"], vals["side_c"]])
    if a + b <= c:
        vals["side_c"] = tidy(abs(vals["side_a"] - vals["side_b"]) + 1, 1)


def fix_find(vals, rng, fixed):
    vals["find"] = rng.choice([w for w in vals["text"].split(" ") if len(w) > 2])


def fix_character(vals, rng, fixed):
    vals["character"] = rng.choice(sorted({c for c in vals["text"].lower() if c.isalpha()}))


def fix_anagram(vals, rng, fixed):
    a, b = rng.choice(ANAGRAM_PAIRS)
    if rng.random() < 0.35:
        b = rng.choice([w for w in WORDS if sorted(w) != sorted(a)])
    if rng.random() < 0.5:
        a, b = b, a
    vals["word_a"], vals["word_b"] = a, b


ALL_WORDS = sorted({w for pair in ANAGRAM_PAIRS for w in pair} | set(WORDS))


def fix_repeat(vals, rng, fixed):
    items = vals["items"]
    if len(set(items)) == len(items):
        items.insert(rng.randrange(len(items) + 1), rng.choice(items))


def fix_occurrence(vals, rng, fixed):
    fix_repeat(vals, rng, fixed)
    vals["value"] = rng.choice(vals["items"])


def fix_overlap(vals, rng, fixed):
    if not set(vals["list_a"]) & set(vals["list_b"]):
        vals["list_b"][rng.randrange(len(vals["list_b"]))] = rng.choice(vals["list_a"])


def fix_same_length(vals, rng, fixed):
    n = min(len(vals["vector_a"]), len(vals["vector_b"]))
    vals["vector_a"], vals["vector_b"] = vals["vector_a"][:n], vals["vector_b"][:n]


def fix_nonzero(name):
    def fix(vals, rng, fixed):
        if vals[name] == 0:
            vals[name] = 1
    return fix


def fix_vegetarian(vals, rng, fixed):
    if vals["vegetarian"] and "chicken" in vals["ingredients"]:
        vals["ingredients"] = [i for i in vals["ingredients"] if i != "chicken"] or ["tofu"]


def restaurant_location():
    def sample(rng):
        c = rng.choice(sorted(HOODS))
        return {"city": c, "neighborhood": rng.choice(HOODS[c])} if rng.random() < 0.5 else {"city": c}

    def render(v, rng):
        c = rng.choice(CITY_ITEMS[v["city"]].surfaces)
        if "neighborhood" not in v:
            return f"in {c}"
        return rng.choice([f"in {v['neighborhood']}, {c}", f"in the {v['neighborhood']} area of {c}",
                           f"around {v['neighborhood']} in {c}"])
    return Obj("location", "Where to search.",
               [Str("city", "City name.", [CITY_ITEMS[c] for c in sorted(HOODS)]),
                Str("neighborhood", "Neighbourhood within the city; the whole city when omitted.",
                    [h for c in sorted(HOODS) for h in HOODS[c]], optional=True)],
               render, sampler=sample)


CITY_ITEMS = {c.value: c for c in CITIES}


def holding():
    def render(v, rng):
        n, t = v["shares"], v["ticker"]
        return rng.choice([f"{n} shares of {t}", f"{n} {t}", f"{t} x {n}"]) if n != 1 else f"1 share of {t}"
    return Obj("holding", "One position.", [Str("ticker", "Stock ticker symbol.", list(TICKERS)),
                                            Int("shares", "Number of shares held.", 1, 500)], render)


# ----------------------------------------------------------------------------------------
# The catalogue


def math_functions():
    D = "math"
    return [
        Fn(D, "math.factorial", "Compute n! (the product 1 x 2 x ... x n) for a non-negative integer n.",
           [Int("n", "The non-negative integer.", 0, 20)],
           ["What is {n} factorial?", "Compute the factorial of {n}.", "factorial of {n}",
            "I need the factorial of {n} for a combinatorics exercise.", "How large is the factorial of {n}?",
            "Could you work out {n}! for me?"]),
        Fn(D, "gcd", "Greatest common divisor of two positive integers.",
           [Int("a", "First integer.", 2, 500), Int("b", "Second integer.", 2, 500)],
           ["What is the greatest common divisor of {a} and {b}?", "gcd of {a} and {b}",
            "Find the highest common factor of {a} and {b}.",
            "I'm simplifying a fraction with numerator {a} and denominator {b}. What's their GCD?",
            "Which is the largest integer that divides both {a} and {b}?"]),
        Fn(D, "math.lcm", "Least common multiple of two positive integers.",
           [Int("a", "First integer.", 2, 60), Int("b", "Second integer.", 2, 60)],
           ["What is the least common multiple of {a} and {b}?", "lcm of {a} and {b}",
            "Find the smallest number that both {a} and {b} divide evenly.",
            "One bus comes every {a} minutes and another every {b} minutes. Compute the LCM of {a} and {b} for me.",
            "Please calculate the LCM of {a} and {b}."], differ=[("a", "b")]),
        Fn(D, "is_prime", "Check whether an integer is a prime number.",
           [Int("number", "The integer to test.", 2, 5000)],
           ["Is {number} a prime number?", "Check whether {number} is prime.", "prime check: {number}",
            "Can {number} be divided by anything other than 1 and itself?", "I wonder if {number} is prime."],
           par=("number",
                ["Are {number} and {number#2} prime?", "Check if {number} and {number#2} are prime numbers."])),
        Fn(D, "prime_factors", "List the prime factors of an integer greater than 1, with repetition.",
           [Int("number", "The integer to factor.", 4, 10000)],
           ["Factorize {number} into primes.", "What are the prime factors of {number}?",
            "prime factorization of {number}", "Break {number} down into its prime factors, please.",
            "Which primes multiply together to give {number}?"]),
        Fn(D, "power", "Raise a base to an integer exponent.",
           [Num("base", "The base.", 1.5, 30, 0.5), Int("exponent", "The exponent (0 or more).", 0, 10)],
           ["What is {base} raised to the power of {exponent}?", "Compute {base} to the power {exponent}.",
            "Raise {base} to the {exponent:ord} power.", "To the power of {exponent}, what does {base} give?",
            ("What is {base} squared?", {"exponent": 2}), ("What's {base} cubed?", {"exponent": 3}),
            "I need {base}^{exponent}."]),
        Fn(D, "nth_root", "The real n-th root of a non-negative number.",
           [Num("x", "The number to take the root of.", 2, 10000, 1),
            Int("n", "Degree of the root (2 for a square root).", 2, 6, default=2, wordy=0.5)],
           ["What is the square root of {x}?", ("What is the cube root of {x}?", {"n": 3}),
            "Find the {n:ord} root of {x}.", "Take the root of degree {n} of {x}.", "sqrt of {x}?",
            "I'd like the square root of {x}, please."],
           par=("x", ["What are the square roots of {x} and {x#2}?"])),
        Fn(D, "logarithm", "Logarithm of a positive number in a given base.",
           [Num("x", "The positive number.", 2, 100000, 1, thousands=True),
            Num("base", "The base of the logarithm.", 2, 16, 1, default=10)],
           ["What is the logarithm of {x}[base: in base {base}]?", "log of {x}[base: to base {base}]",
            "Compute log base {base} of {x}.", ("What is the binary logarithm of {x}?", {"base": 2}),
            "Find the base-{base} logarithm of {x}.", "I need the common logarithm of {x}."]),
        Fn(D, "solve_quadratic", "Real roots of a*x^2 + b*x + c = 0.",
           [Num("a", "Coefficient of x^2 (not zero).", -10, 10, 1, wordy=0),
            Num("b", "Coefficient of x.", -20, 20, 1, wordy=0), Num("c", "Constant term.", -30, 30, 1, wordy=0)],
           ["Solve the quadratic equation with a = {a}, b = {b} and c = {c}.",
            "Find the roots of a quadratic whose coefficients are a={a}, b={b}, c={c}.",
            "Quadratic with c = {c}, a = {a} and b = {b}: what are the solutions?",
            "I have a x^2 + b x + c = 0 where a is {a}, b is {b} and c is {c}. Solve it, please."],
           fix=fix_nonzero("a")),
        Fn(D, "round_number", "Round a number to a given number of decimal places.",
           [Num("value", "The number to round.", 0, 1000, 0.0001, wordy=0),
            Int("decimals", "Decimal places to keep.", 0, 4, default=0,
                unit=[("{} decimal place", "{} decimal places"), ("{} decimal", "{} decimals")])],
           ["Round {value} to {decimals}.", "Round {value}[decimals: to {decimals}].",
            "What is {value} rounded to the nearest whole number?",
            ("Round {value} to one decimal place.", {"decimals": 1}),
            "Please round {value}[decimals:, keeping {decimals}]."]),
        Fn(D, "percentage_of", "What percentage one number (part) is of another (whole).",
           [Num("part", "The part.", 1, 500, 1), Num("whole", "The whole.", 2, 1000, 1)],
           ["What percentage of {whole} is {part}?", "{part} out of {whole} is what percent?",
            "Express {part} as a percentage of {whole}.",
            "I scored {part} points out of {whole}. What's that as a percentage?",
            "Out of a total of {whole}, {part} were sold. What percent is that?"],
           ascending=[("part", "whole")]),
        Fn(D, "binomial_coefficient", "Number of ways to choose k items from n (n choose k).",
           [Int("n", "Size of the set.", 2, 40), Int("k", "How many to choose.", 0, 20)],
           ["How many ways are there to choose {k} items from {n}?", "{n} choose {k}",
            "Compute the binomial coefficient for n = {n} and k = {k}.",
            "In how many ways can a committee of {k} be picked from {n} people?",
            "From {n} cards, how many different hands of {k} are possible?"],
           ascending=[("k", "n")]),
        Fn(D, "fibonacci", "The n-th Fibonacci number (F1 = F2 = 1).",
           [Int("n", "Position in the sequence, 1 or more.", 1, 80)],
           ["What is the {n:ord} Fibonacci number?", "Give me Fibonacci number {n}.",
            "Find the {n:ord} term of the Fibonacci sequence.", "fibonacci n={n}",
            "Which number sits at position {n} of the Fibonacci sequence?"]),
        Fn(D, "modulo", "Remainder of an integer division.",
           [Int("dividend", "The number divided.", 10, 10000), Int("divisor", "The number to divide by.", 2, 99)],
           ["What is the remainder when {dividend} is divided by {divisor}?", "{dividend} mod {divisor}",
            "Divide {dividend} by {divisor} and tell me the remainder.",
            "Remainder of {dividend} divided by {divisor}?",
            "If I split {dividend} sweets among {divisor} kids evenly, how many are left over?"],
           ascending=[("divisor", "dividend")]),
        Fn(D, "evaluate_polynomial", "Evaluate a polynomial at x; coefficients from the highest power down.",
           [List("coefficients", "Coefficients, highest degree first.", Num("c", "", -10, 10, 1), 2, 5,
                 distinct=False, brackets=True),
            Num("x", "Where to evaluate.", -10, 10, 0.5, wordy=0)],
           ["Evaluate the polynomial with coefficients {coefficients} (highest degree first) at x = {x}.",
            "At x = {x}, what is the value of the polynomial whose coefficients, from the highest power down, are "
            "{coefficients}?",
            "Plug x={x} into the polynomial with coefficients {coefficients}, highest power first."]),
        Fn(D, "convert_number_base", "Write a non-negative integer in another base (2 to 16).",
           [Int("number", "The integer, in decimal.", 0, 5000, wordy=0),
            Int("to_base", "Target base, 2 to 16.", 2, 16)],
           ["Write {number} in base {to_base}.", "Convert the decimal number {number} to base {to_base}.",
            ("What is {number} in binary?", {"to_base": 2}), ("Show {number} in hexadecimal.", {"to_base": 16}),
            ("{number} in octal, please.", {"to_base": 8}), "Base {to_base} representation of {number}?"]),
    ]


def geometry_functions():
    D = "geometry"
    R = lambda: Num("radius", "Radius.", 0.5, 50, 0.5, unit="ctx")
    L = lambda name, desc: Num(name, desc, 1, 100, 0.5, unit="ctx")
    return [
        Fn(D, "circle_area", "Area of a circle from its radius.", [R()],
           ["What is the area of a circle with a radius of {radius}?", "Area of a circle, radius {radius}.",
            "A round table has a radius of {radius}. How much surface does it have?",
            "Calculate the area of a circle whose radius is {radius}.", "circle area r={radius}"],
           par=("radius", ["What are the areas of circles with radii {radius} and {radius#2}?",
                           "Find the area of a circle of radius {radius} and of one of radius {radius#2}."]),
           ctx_units=U_LEN),
        Fn(D, "circle_circumference", "Circumference of a circle from its radius.", [R()],
           ["What is the circumference of a circle with radius {radius}?",
            "How long is the edge of a circle of radius {radius}?", "Perimeter of a circle with a radius of {radius}?",
            "I'm putting a border around a round flower bed with a radius of {radius}. How long must it be?"],
           ctx_units=U_LEN),
        Fn(D, "rectangle_area", "Area of a rectangle.",
           [L("length", "Length of the rectangle."), L("width", "Width of the rectangle.")],
           ["What's the area of a rectangle {length} long and {width} wide?",
            "Rectangle: width {width}, length {length}. Area?",
            "Find the area of a rectangle with length {length} and width {width}.",
            "My room is {length} long and {width} wide. How much floor area is that?"], ctx_units=U_LEN),
        Fn(D, "rectangle_perimeter", "Perimeter of a rectangle.",
           [L("length", "Length of the rectangle."), L("width", "Width of the rectangle.")],
           ["What's the perimeter of a rectangle {length} long and {width} wide?",
            "How much fencing goes around a rectangular garden with a width of {width} and a length of {length}?",
            "Perimeter of a rectangle: length {length}, width {width}.",
            "Please compute the perimeter of a {length} by {width} rectangle (length by width)."],
           ctx_units=U_LEN),
        Fn(D, "triangle_area", "Area of a triangle from its base and height.",
           [L("base", "Length of the base."), L("height", "Height perpendicular to the base.")],
           ["Area of a triangle with base {base} and height {height}?",
            "A triangle has a height of {height} and a base of {base}. What is its area?",
            "Compute the area of a triangle: base {base}, height {height}.",
            "What's the area of a triangular sail whose base is {base} and whose height is {height}?"],
           ctx_units=U_LEN),
        Fn(D, "triangle_area_from_sides", "Area of a triangle from its three side lengths (Heron's formula).",
           [L("side_a", "First side."), L("side_b", "Second side."), L("side_c", "Third side.")],
           ["Use Heron's formula for a triangle with sides {side_a}, {side_b} and {side_c}.",
            "What is the area of a triangle whose sides are {side_a}, {side_b} and {side_c}?",
            "Triangle with side lengths {side_a}, {side_b}, {side_c}: how big is its area?"],
           fix=fix_triangle, ctx_units=U_LEN),
        Fn(D, "hypotenuse", "Length of the hypotenuse of a right triangle from its two legs.",
           [L("leg_a", "First leg."), L("leg_b", "Second leg.")],
           ["A right triangle has legs of {leg_a} and {leg_b}. How long is the hypotenuse?",
            "Hypotenuse for legs {leg_a} and {leg_b}?",
            "Find the longest side of a right triangle whose shorter sides are {leg_a} and {leg_b}.",
            "A ladder reaches {leg_a} up a wall and its foot is {leg_b} from the wall. How long is the ladder?"],
           ctx_units=U_LEN),
        Fn(D, "sphere_volume", "Volume of a sphere from its radius.", [R()],
           ["Volume of a sphere of radius {radius}?", "How much does a ball with a radius of {radius} hold?",
            "Compute the volume of a sphere whose radius is {radius}.", "sphere volume, r = {radius}"],
           par=("radius", ["What are the volumes of spheres with radius {radius} and radius {radius#2}?"]),
           ctx_units=U_LEN),
        Fn(D, "sphere_surface_area", "Surface area of a sphere from its radius.", [R()],
           ["What is the surface area of a sphere with radius {radius}?",
            "How much paint covers a ball of radius {radius}? I need its surface area.",
            "Surface area of a sphere, radius {radius}."], ctx_units=U_LEN),
        Fn(D, "cylinder_volume", "Volume of a cylinder.", [R(), L("height", "Height of the cylinder.")],
           ["What is the volume of a cylinder with radius {radius} and height {height}?",
            "A can is {height} tall with a radius of {radius}. How much can it hold?",
            "cylinder volume, height {height}, radius {radius}",
            "Compute how much water fits in a cylindrical tank of radius {radius} and height {height}."],
           ctx_units=U_LEN),
        Fn(D, "cone_volume", "Volume of a right circular cone.", [R(), L("height", "Height of the cone.")],
           ["What is the volume of a cone with radius {radius} and height {height}?",
            "A cone is {height} high and its base has a radius of {radius}. Volume?",
            "How much ice cream fits in a cone of height {height} and radius {radius}?"], ctx_units=U_LEN),
        Fn(D, "distance_2d", "Euclidean distance between two points in the plane.",
           [point("point_a", "First point."), point("point_b", "Second point.")],
           ["How far apart are the points {point_a} and {point_b}?", "Distance between {point_a} and {point_b}?",
            "Compute the Euclidean distance from {point_a} to {point_b}.",
            "What's the straight-line distance between {point_a} and {point_b}?"]),
        Fn(D, "midpoint", "Midpoint of the segment between two points in the plane.",
           [point("point_a", "First point."), point("point_b", "Second point.")],
           ["What's the midpoint between {point_a} and {point_b}?",
            "Find the point halfway from {point_a} to {point_b}.", "midpoint of {point_a} and {point_b}"]),
        Fn(D, "interior_angle_sum", "Sum of the interior angles of a simple polygon, in degrees.",
           [Int("sides", "Number of sides, 3 or more.", 3, 12,
                names={3: ["triangle"], 4: ["quadrilateral"], 5: ["pentagon"], 6: ["hexagon"], 8: ["octagon"],
                       10: ["decagon"]}, name_format="{}-sided polygon")],
           ["What is the sum of the interior angles of a {sides:name}?",
            "What do the interior angles of a polygon with {sides} sides add up to?",
            "Angle sum for a {sides:name}?", "Interior angles of a {sides}-sided shape: what's their total?"]),
        Fn(D, "regular_polygon_area", "Area of a regular polygon from its number of sides and side length.",
           [Int("sides", "Number of sides, 3 or more.", 3, 12,
                names={3: ["equilateral triangle"], 4: ["square"], 5: ["pentagon"], 6: ["hexagon"],
                       8: ["octagon"]}, name_format="{}-sided polygon"),
            L("side_length", "Length of one side.")],
           ["Area of a regular {sides:name} with sides of {side_length}?",
            "A regular polygon has {sides} sides, each {side_length} long. What's its area?",
            "Compute the area of a regular {sides:name} whose side length is {side_length}."], ctx_units=U_LEN),
        Fn(D, "box_volume", "Volume of a rectangular box.",
           [Obj("dimensions", "The box's dimensions.",
                [Num("length", "Length.", 1, 50, 0.5), Num("width", "Width.", 1, 50, 0.5),
                 Num("height", "Height.", 1, 50, 0.5)],
                lambda v, rng: rng.choice([
                    "{} x {} x {}", "{} by {} by {}", "length {}, width {} and height {}"]).format(
                    *(number_text(v[k]) for k in ("length", "width", "height"))))],
           ["What is the volume of a box measuring {dimensions}?",
            "How much space is inside a crate of {dimensions} (length, width, height)?",
            "Box volume for dimensions {dimensions}.", "I'm shipping a parcel of {dimensions}. What's its volume?"]),
        Fn(D, "polygon_perimeter", "Perimeter of a polygon from its side lengths.",
           [List("side_lengths", "Length of every side.", Num("s", "", 1, 30, 0.5), 3, 6, distinct=False)],
           ["What's the perimeter of a polygon with sides {side_lengths}?",
            "A plot of land has sides of {side_lengths}. How long is its boundary?",
            "perimeter for side lengths {side_lengths}"]),
    ]


LENGTH_UNITS = {"m": ["meters", "metres", "m"], "km": ["kilometers", "kilometres", "km"],
                "cm": ["centimeters", "cm"], "mm": ["millimeters", "mm"], "mi": ["miles"], "ft": ["feet", "ft"],
                "in": ["inches"], "yd": ["yards"]}
TEMP_SCALES = {"celsius": ["degrees Celsius", "°C", "Celsius"],
               "fahrenheit": ["degrees Fahrenheit", "°F", "Fahrenheit"],
               "kelvin": ["kelvin", "K"]}
WEIGHT_UNITS = {"kg": ["kilograms", "kg", "kilos"], "g": ["grams", "g"], "lb": ["pounds", "lbs"],
                "oz": ["ounces", "oz"], "t": ["metric tons", "tonnes"]}
VOLUME_UNITS = {"l": ["liters", "litres", "L"], "ml": ["milliliters", "ml"], "gal": ["US gallons", "gallons"],
                "cup": ["cups"], "fl_oz": ["fluid ounces", "fl oz"]}
SPEED_UNITS = {"km/h": ["km/h", "kilometers per hour", "kph"], "mph": ["mph", "miles per hour"],
               "m/s": ["m/s", "meters per second"], "knots": ["knots"]}
AREA_UNITS = {"m2": ["square meters", "m²", "sq m"], "km2": ["square kilometers", "km²"], "ha": ["hectares", "ha"],
              "acre": ["acres"], "ft2": ["square feet", "sq ft"]}
DURATION_UNITS = {"seconds": ["seconds", "secs"], "minutes": ["minutes", "mins"], "hours": ["hours", "hrs"],
                  "days": ["days"], "weeks": ["weeks"]}
DATA_UNITS = {"B": ["bytes", "B"], "KB": ["kilobytes", "KB"], "MB": ["megabytes", "MB"], "GB": ["gigabytes", "GB"],
              "TB": ["terabytes", "TB"]}
ENERGY_UNITS = {"J": ["joules", "J"], "kJ": ["kilojoules", "kJ"], "cal": ["calories", "cal"],
                "kcal": ["kilocalories", "kcal"], "kWh": ["kilowatt-hours", "kWh"]}
PRESSURE_UNITS = {"Pa": ["pascals", "Pa"], "kPa": ["kilopascals", "kPa"], "bar": ["bar"],
                  "atm": ["atmospheres", "atm"], "psi": ["psi", "pounds per square inch"]}
FUEL_UNITS = {"mpg": ["mpg", "miles per gallon"], "l/100km": ["L/100 km", "liters per 100 km"],
              "km/l": ["km/L", "kilometers per liter"]}


def conversion_functions():
    D = "conversion"
    V = lambda lo=2, hi=500, step=0.5: Num("value", "The value to convert.", lo, hi, step)
    return [
        convert("convert_length", "Convert a length between metric and imperial units.", LENGTH_UNITS, V(),
                CONVERT_TEMPLATES + ["I ran {value} {from_unit} today. What is that in {to_unit}?"], CONVERT_PAR,
                alike="length"),
        Fn(D, "miles_to_km", "Convert a distance in miles to kilometers.",
           [Num("miles", "Distance in miles.", 0.5, 1000, 0.5, unit=[("{} mile", "{} miles"), "{} mi"])],
           ["How many kilometers is {miles}?", "Convert {miles} to km.", "{miles} in kilometres?",
            "The hike is {miles}. What's that in km?"],
           par=("miles", ["Convert {miles} and {miles#2} to kilometers."]), alike="length"),
        Fn(D, "convert_temperature", "Convert a temperature between Celsius, Fahrenheit and Kelvin.",
           [Num("value", "The temperature to convert.", -40, 120, 0.5),
            Enum("from_scale", "Scale of the given temperature.", TEMP_SCALES),
            Enum("to_scale", "Scale to convert to.", TEMP_SCALES)],
           ["Convert {value} {from_scale} to {to_scale}.", "What is {value} {from_scale} in {to_scale}?",
            "The thermostat reads {value} {from_scale}. How much is that in {to_scale}?",
            "{value} {from_scale} to {to_scale}, please.", "In {to_scale}, what would {value} {from_scale} be?"],
           par=("value", ["Convert {value} and {value#2} {from_scale} to {to_scale}."]),
           alike="temperature", differ=[("from_scale", "to_scale")]),
        Fn(D, "celsius_to_fahrenheit", "Convert a temperature from Celsius to Fahrenheit.",
           [Num("celsius", "Temperature in degrees Celsius.", -40, 60, 0.5, unit=U_CELSIUS)],
           ["What is {celsius} in Fahrenheit?", "It's {celsius} outside. How warm is that in °F?",
            "Convert {celsius} to Fahrenheit.", "{celsius} -> Fahrenheit?",
            "My recipe says to chill the dough at {celsius}. What's that in Fahrenheit?"],
           par=("celsius", ["Convert {celsius} and {celsius#2} to Fahrenheit."]), alike="temperature"),
        convert("convert_weight", "Convert a mass between metric and imperial units.", WEIGHT_UNITS, V(),
                CONVERT_TEMPLATES + ["My suitcase weighs {value} {from_unit}. How much is that in {to_unit}?"],
                CONVERT_PAR),
        convert("convert_volume", "Convert a volume between metric and US customary units.", VOLUME_UNITS, V(),
                CONVERT_TEMPLATES + ["The recipe calls for {value} {from_unit}. How many {to_unit} is that?"]),
        Fn(D, "convert_currency", "Convert an amount of money between currencies at the current rate.",
           [Num("amount", "Amount to convert.", 5, 10000, 1, thousands=True),
            Str("from_currency", "ISO 4217 code of the source currency, e.g. USD.", CURRENCY_POOL),
            Str("to_currency", "ISO 4217 code of the target currency, e.g. EUR.", CURRENCY_POOL)],
           ["Convert {amount} {from_currency} to {to_currency}.",
            "How much is {amount} {from_currency} in {to_currency}?",
            "I have {amount} {from_currency}. What would I get in {to_currency}?",
            "Change {amount} {from_currency} into {to_currency}, please.",
            "What's the {to_currency} equivalent of {amount} {from_currency}?"],
           par=("amount", ["Convert {amount} and {amount#2} {from_currency} to {to_currency}."]),
           alike="fx", differ=[("from_currency", "to_currency")]),
        Fn(D, "get_exchange_rate", "Exchange rate between two currencies.",
           [Str("base_currency", "ISO 4217 code of the currency being priced, e.g. GBP.", CURRENCY_POOL),
            Str("quote_currency", "ISO 4217 code of the currency the price is in, e.g. JPY.", CURRENCY_POOL),
            Date("date", "Date of the rate, YYYY-MM-DD; the latest rate when omitted.", years=(2018, 2024),
                 optional=True)],
           ["What's the exchange rate from {base_currency} to {quote_currency}[date: on {date}]?",
            "{base_currency} to {quote_currency} rate[date: as of {date}]",
            "How do {base_currency} trade against {quote_currency}[date: on {date}]?",
            "Look up the {base_currency}/{quote_currency} exchange rate for {date}."],
           alike="fx", differ=[("base_currency", "quote_currency")]),
        convert("convert_speed", "Convert a speed between units.", SPEED_UNITS, V(1, 300, 1),
                CONVERT_TEMPLATES + ["The speed limit is {value} {from_unit}. What is that in {to_unit}?"],
                CONVERT_PAR),
        convert("convert_area", "Convert an area between units.", AREA_UNITS, V(1, 5000, 1),
                CONVERT_TEMPLATES + ["Our farm covers {value} {from_unit}. How many {to_unit} is that?"]),
        convert("convert_duration", "Convert a duration between seconds, minutes, hours, days and weeks.",
                DURATION_UNITS, V(2, 1000, 1), CONVERT_TEMPLATES, CONVERT_PAR),
        convert("convert_data_size", "Convert an amount of digital data between units.", DATA_UNITS,
                V(1, 4096, 1),
                ["Convert {value} {from_unit} to {to_unit}[binary:, {binary}].",
                 "How many {to_unit} is {value} {from_unit}[binary: {binary}]?",
                 "My file is {value} {from_unit}. What's that in {to_unit}[binary:, {binary}]?"],
                extra=[Bool("binary", "Use 1024-based units (1 KB = 1024 B) instead of 1000-based ones.",
                            ["using binary units (1 KB = 1024 bytes)", "with 1024-based units"],
                            ["using decimal units (1 KB = 1000 bytes)", "with 1000-based units"], default=False)]),
        convert("convert_energy", "Convert energy between units.", ENERGY_UNITS, V(1, 10000, 1),
                CONVERT_TEMPLATES + ["A snack has {value} {from_unit}. How many {to_unit} is that?"]),
        convert("convert_pressure", "Convert pressure between units.", PRESSURE_UNITS, V(1, 500, 0.5),
                CONVERT_TEMPLATES + ["My tyre gauge says {value} {from_unit}. What's that in {to_unit}?"]),
        convert("convert_fuel_economy", "Convert fuel economy between mpg, L/100 km and km/L.", FUEL_UNITS,
                V(3, 80, 0.5), CONVERT_TEMPLATES + ["My car does {value} {from_unit}. What's that in {to_unit}?"]),
        Fn(D, "convert_shoe_size", "Convert a shoe size between the US, UK and EU systems.",
           [Num("size", "The shoe size.", 4, 13, 0.5, wordy=0),
            Enum("from_system", "System of the given size.", {"us": ["US"], "uk": ["UK"], "eu": ["EU", "European"]}),
            Enum("to_system", "System to convert to.", {"us": ["US"], "uk": ["UK"], "eu": ["EU", "European"]}),
            Enum("category", "Sizing chart to use.", {"men": ["men's"], "women": ["women's"], "children": ["kids'"]},
                 default="men")],
           ["I wear a {from_system} size {size}. What is that in {to_system} sizes?",
            "Convert {from_system} shoe size {size} to {to_system}[category: ({category} sizes)].",
            "What's a[category: {category}] {from_system} {size} in {to_system} sizing?",
            "{to_system} equivalent of a[category: {category}] {from_system} shoe size {size}?"],
           differ=[("from_system", "to_system")]),
        Fn(D, "to_roman", "Write an integer from 1 to 3999 as a Roman numeral.",
           [Int("number", "The integer, 1 to 3999.", 1, 3999, wordy=0, plain=True)],
           ["Write {number} in Roman numerals.", "What's {number} as a Roman numeral?",
            "Convert {number} to Roman numerals, please.", "How would the Romans have written {number}?"],
           par=("number", ["Write {number} and {number#2} as Roman numerals."])),
        Fn(D, "from_roman", "Read a Roman numeral as an integer.",
           [Str("numeral", "The Roman numeral, e.g. XIV.", ROMANS)],
           ["What number is the Roman numeral {numeral}?", "Convert {numeral} from Roman numerals to a number.",
            "The film's copyright line says {numeral}. What year is that?", "{numeral} in ordinary digits?"]),
    ]


def weather_functions():
    D = "weather"
    wind_units = {"km/h": ["km/h", "kilometers per hour"], "mph": ["mph", "miles per hour"],
                  "m/s": ["m/s", "meters per second"], "knots": ["knots"]}
    return [
        Fn(D, "get_current_weather", "Current weather conditions for a city.", [city_param(), temp_unit()],
           ["What's the weather like in {city} right now[unit:, in {unit}]?",
            "Current weather in {city}[unit: ({unit})]",
            "Is it warm in {city} at the moment? Give me the temperature[unit: in {unit}].",
            "I'm about to head out in {city}. How's the weather?",
            "Tell me the current conditions for {city}[unit: in {unit}].", "weather {city} now"],
           par=("city", ["What's the weather in {city} and in {city#2}[unit:, in {unit}]?",
                         "Current weather for {city} and {city#2}, please.",
                         "How's the weather right now in {city}? And in {city#2}?"]),
           alike="temperature-now"),
        Fn(D, "get_forecast", "Daily weather forecast for a city.",
           [city_param(), Int("days", "Number of days to forecast, 1 to 14.", 1, 14, unit=U_DAYS), temp_unit()],
           ["What's the forecast for {city} for the next {days}[unit:, in {unit}]?",
            "Weather forecast, {city}, next {days}[unit:, {unit}]",
            "I'm travelling to {city} for {days}. What weather should I expect[unit: (temperatures in {unit})]?",
            "Forecast the next {days} in {city}, please.", "Give me {days} of forecast for {city}."],
           par=("city", ["Compare the forecasts for {city} and {city#2} over the next {days}.",
                         "What's the forecast for the next {days} in {city} and in {city#2}?"]),
           alike="rain"),
        Fn(D, "get_hourly_forecast", "Hour-by-hour forecast for a city.",
           [city_param(), Int("hours", "How many hours ahead, 1 to 48.", 1, 48, unit=U_HOURS, default=24)],
           ["Hour-by-hour forecast for {city}[hours: for the next {hours}].",
            "What will the weather in {city} be like over the next {hours}?",
            "Give me an hourly forecast for {city}[hours: covering {hours}].",
            "Will the weather in {city} change during the next {hours}?"]),
        Fn(D, "get_air_quality", "Air quality index for a city.",
           [city_param(), Bool("include_pollutants", "Also return the level of each pollutant.",
                               ["with a breakdown by pollutant", "including the individual pollutant levels"],
                               ["just the overall index", "without the pollutant breakdown"], default=False)],
           ["How is the air quality in {city}[include_pollutants:, {include_pollutants}]?",
            "Is the air in {city} safe to breathe today?", "AQI for {city}[include_pollutants: ({include_pollutants})]",
            "I want to go running in {city}. What's the air quality index[include_pollutants:, {include_pollutants}]?"],
           par=("city", ["Compare the air quality in {city} and {city#2}."])),
        Fn(D, "get_uv_index", "UV index for a city.",
           [city_param(), Date("date", "Date, YYYY-MM-DD; today when omitted.", years=(2025, 2026), optional=True)],
           ["What's the UV index in {city}[date: on {date}]?",
            "Do I need sunscreen in {city}[date: on {date}]? Check the UV index.", "UV index, {city}[date:, {date}]",
            "How strong will the sun be in {city}[date: on {date}]?"]),
        Fn(D, "get_sunrise_sunset", "Sunrise and sunset times for a city on a date.",
           [city_param(), Date("date", "Date, YYYY-MM-DD.")],
           ["When does the sun rise and set in {city} on {date}?", "Sunrise and sunset times for {city}, {date}.",
            "On {date}, what time is sunrise in {city}?",
            "I want to photograph the sunset in {city} on {date}. When is it?"],
           par=("city", ["Sunrise and sunset on {date} in {city} and in {city#2}?"])),
        Fn(D, "get_historical_weather", "Observed weather for a city on a past date.",
           [city_param(), Date("date", "Past date, YYYY-MM-DD.", years=(2010, 2024)), temp_unit()],
           ["What was the weather in {city} on {date}?", "Look up past weather: {city}, {date}[unit:, {unit}].",
            "How hot was it in {city} on {date}[unit: (in {unit})]?",
            "My grandmother was married in {city} on {date}. What was the weather that day?"]),
        Fn(D, "get_precipitation_chance", "Probability of rain or snow in a city on a date.",
           [city_param(), Date("date", "Date, YYYY-MM-DD.", years=(2025, 2026))],
           ["Will it rain in {city} on {date}?", "Chance of rain in {city} for {date}?",
            "Should I bring an umbrella to {city} on {date}?",
            "What's the precipitation probability for {city} on {date}?"],
           alike="rain"),
        Fn(D, "get_weather_alerts", "Active weather warnings for a region.",
           [Str("region", "Region, state or province name.", REGIONS),
            Enum("min_severity", "Lowest severity to include.",
                 {"minor": ["minor"], "moderate": ["moderate"], "severe": ["severe"], "extreme": ["extreme"]},
                 default="moderate")],
           ["Are there any weather warnings for {region}[min_severity: at {min_severity} level or above]?",
            "List active weather alerts in {region}[min_severity:, only {min_severity} and worse].",
            "Any storm alerts out for {region}?",
            "Check {region} for weather alerts[min_severity: of {min_severity} severity or higher]."],
           par=("region", ["Are there weather alerts for {region} or {region#2}?"])),
        Fn(D, "get_wind", "Wind speed and direction for a city.",
           [city_param(), Enum("unit", "Unit for the wind speed.", wind_units, default="km/h")],
           ["How windy is it in {city}[unit: (in {unit})]?", "Wind speed and direction in {city}[unit:, in {unit}]",
            "I want to go sailing near {city}. What's the wind like[unit: in {unit}]?",
            "Is it too windy to fly a drone in {city}?"]),
        Fn(D, "get_weather_by_coordinates", "Current weather at a latitude and longitude.",
           [coordinates(), temp_unit()],
           ["What's the weather at {location}?", "Current conditions at coordinates {location}[unit:, in {unit}]",
            "I'm at {location}. How's the weather here[unit: in {unit}]?",
            "Weather report for the point {location}, please."]),
        Fn(D, "get_pollen_count", "Pollen levels for a city.",
           [city_param(), Enum("pollen_type", "Kind of pollen; every kind when omitted.",
                               {"tree": ["tree"], "grass": ["grass"], "weed": ["weed", "ragweed"]}, optional=True)],
           ["What's the pollen count in {city}[pollen_type: for {pollen_type} pollen]?",
            "My allergies are acting up in {city}. How high is the[pollen_type: {pollen_type}] pollen today?",
            "pollen levels {city}[pollen_type:, {pollen_type}]"]),
        Fn(D, "get_marine_forecast", "Wave, wind and sea forecast for a coastal area.",
           [Str("area", "Coastal area or beach name.", COASTS),
            Int("days", "Days ahead, 1 to 7.", 1, 7, unit=U_DAYS, default=3)],
           ["Marine forecast for {area}[days: for the next {days}].",
            "What are sea conditions like off {area}[days: over the next {days}]?",
            "Going surfing at {area}. How big are the waves going to be over the next {days}?"]),
        Fn(D, "compare_temperatures", "Current temperatures of several cities, warmest first.",
           [List("cities", "City names.", Str("city", "City name.", CITY_NAMES), 2, 4)],
           ["Which is warmer right now: {cities}?", "Compare the current temperatures of {cities}.",
            "Rank {cities} by how warm they are today.", "Where is it hottest at the moment, {cities}?"],
           alike="temperature-now"),
        Fn(D, "get_snow_report", "Snow depth and conditions at a ski resort.",
           [Str("resort", "Ski resort name.", RESORTS),
            Enum("unit", "Unit for snow depth.", {"cm": ["centimeters", "cm"], "in": ["inches"]}, default="cm")],
           ["How much snow is there at {resort}[unit:, in {unit}]?", "Snow report for {resort}.",
            "Are the slopes at {resort} any good right now? Give me the snow depth[unit: in {unit}]."],
           par=("resort", ["Which has more snow right now, {resort} or {resort#2}?"])),
        Fn(D, "get_climate_averages", "Typical temperature and rainfall for a city in a given month.",
           [city_param(), Enum("month", "Month name.", {m: [m] for m in MONTHS})],
           ["What's the typical weather in {city} in {month}?",
            "Average temperature and rainfall for {city} in {month}?",
            "Planning a trip to {city} in {month}. What is the climate usually like?",
            "In {month}, how warm does {city} usually get?"],
           par=("city", ["How do {city} and {city#2} compare in {month}, climate-wise?"])),
    ]


def calendar_functions():
    D = "calendar"
    weekdays = {d.lower(): [d] for d in ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]}
    return [
        Fn(D, "calendar.day_of_week", "Day of the week of a date.",
           [Date("date", "Date, YYYY-MM-DD.", years=(1990, 2030))],
           ["What day of the week is {date}?", "Which weekday does {date} fall on?", "Tell me the weekday of {date}.",
            "day of week for {date}", "My friend's party is on {date}. Is that a weekend?"],
           par=("date", ["What days of the week are {date} and {date#2}?"])),
        Fn(D, "days_between", "Number of days between two dates.",
           [Date("start_date", "First date, YYYY-MM-DD."), Date("end_date", "Second date, YYYY-MM-DD."),
            Bool("include_end", "Count the end date as well.", ["counting the end date too", "including the last day"],
                 ["not counting the end date", "excluding the last day"], default=False)],
           ["How many days are there between {start_date} and {end_date}[include_end:, {include_end}]?",
            "Count the days from {start_date} to {end_date}[include_end:, {include_end}].",
            "From {start_date} until {end_date}, how many days is that[include_end: ({include_end})]?",
            "I'm away from {start_date} to {end_date}. How many days is the trip[include_end:, {include_end}]?"],
           alike="span", ascending=[("start_date", "end_date")]),
        Fn(D, "business_days_between", "Working days (Monday to Friday, minus public holidays) between two dates.",
           [Date("start_date", "First date, YYYY-MM-DD."), Date("end_date", "Last date, YYYY-MM-DD."),
            Str("country", "Country whose public holidays are skipped.", COUNTRIES, default="United States")],
           ["How many working days are there between {start_date} and {end_date}[country: in {country}]?",
            "Business days from {start_date} to {end_date}[country:, using the public holidays of {country}]?",
            "Count the weekdays from {start_date} through {end_date}, skipping holidays[country: in {country}].",
            "The contractor starts on {start_date} and finishes on {end_date}. How many business days is "
            "that[country: in {country}]?"],
           alike="span", ascending=[("start_date", "end_date")]),
        Fn(D, "add_days", "The date a number of days after a given date.",
           [Date("date", "Start date, YYYY-MM-DD."), Int("days", "Days to add.", 1, 400, unit=U_DAYS)],
           ["What date is {days} after {date}?", "Add {days} to {date}.",
            "If I start on {date}, what's the date {days} later?", "{days} from {date} is which date?",
            "The warranty began on {date} and lasts {days}. When does it end?"]),
        Fn(D, "is_leap_year", "Whether a year is a leap year in the Gregorian calendar.",
           [Int("year", "The year.", 1800, 2400, plain=True)],
           ["Is {year} a leap year?", "Does February have 29 days in {year}?", "leap year check for {year}",
            "Was {year} a leap year or not?"],
           par=("year", ["Are {year} and {year#2} leap years?", "Which of {year} and {year#2} is a leap year?"])),
        Fn(D, "create_event", "Add an event to the user's calendar.",
           [Str("title", "Event title.", EVENT_TITLES, quote=True),
            Date("date", "Date, YYYY-MM-DD.", years=(2025, 2026)),
            Time("start_time", "Start time, 24-hour HH:MM."),
            Int("duration_minutes", "Length in minutes.", 15, 240, unit=U_MIN, default=60),
            Str("location", "Where it takes place.", LOCATIONS, optional=True),
            List("attendees", "Names of people to invite.", Str("name", "", PEOPLE), 1, 3, optional=True)],
           ["Schedule {title} on {date} at {start_time}[duration_minutes: for {duration_minutes}][location: in "
            "{location}][attendees: with {attendees}].",
            "Put {title} in my calendar for {date}, {start_time}[duration_minutes:, lasting {duration_minutes}].",
            "Create an event called {title} at {start_time} on {date}[attendees: and invite {attendees}].",
            "Please book {title} for {date} starting {start_time}[location: at {location}][duration_minutes:; it "
            "takes {duration_minutes}]."]),
        Fn(D, "list_events", "Events in the user's calendar on a date.",
           [Date("date", "Date, YYYY-MM-DD.", years=(2025, 2026)),
            Enum("calendar", "Which calendar to read.", {"work": ["work"], "personal": ["personal"],
                                                         "family": ["family"], "all": ["combined"]}, default="all")],
           ["What's on my calendar for {date}[calendar: in the {calendar} calendar]?",
            "Do I have anything scheduled on {date}?", "List my[calendar: {calendar}] events for {date}.",
            "Show me the agenda for {date}[calendar: from my {calendar} calendar]."]),
        Fn(D, "find_free_slot", "First free slot of a given length in the user's calendar on a date.",
           [Date("date", "Date, YYYY-MM-DD.", years=(2025, 2026)),
            Int("duration_minutes", "Length of the slot in minutes.", 15, 180, unit=U_MIN),
            Time("earliest", "Earliest start, 24-hour HH:MM.", hours=(6, 11), default="09:00"),
            Time("latest", "Latest end, 24-hour HH:MM.", hours=(13, 21), default="17:00")],
           ["Find me a free slot of {duration_minutes} on {date}[earliest: no earlier than {earliest}][latest:, "
            "ending by {latest}].",
            "When am I free for {duration_minutes} on {date}[earliest: after {earliest}]?",
            "I need {duration_minutes} for a call on {date}[latest:, finished by {latest}]. When could I fit it in?"]),
        Fn(D, "convert_time_between_cities", "Convert a time of day from one city's time zone to another's.",
           [Time("time", "Time of day, 24-hour HH:MM."), city_param("from_city", "City where the time is given."),
            city_param("to_city", "City to convert the time to.")],
           ["If it's {time} in {from_city}, what time is it in {to_city}?",
            "Convert {time} {from_city} time to {to_city} time.",
            "I have a call at {time} {from_city} time. When is that in {to_city}?",
            "What time is it in {to_city} when it's {time} in {from_city}?"],
           differ=[("from_city", "to_city")]),
        Fn(D, "get_current_time", "Current local time in an IANA time zone.",
           [Str("timezone", "IANA time zone name, e.g. Europe/Madrid.", TIMEZONES)],
           ["What time is it in the {timezone} time zone?", "Current local time for timezone {timezone}?",
            "Tell me the time right now in {timezone}."],
           par=("timezone", ["What time is it now in {timezone} and in {timezone#2}?"])),
        Fn(D, "get_public_holidays", "Public holidays of a country in a year.",
           [Str("country", "Country name.", COUNTRIES), Int("year", "The year.", 2020, 2030, plain=True)],
           ["List the public holidays in {country} for {year}.",
            "Which days are national holidays in {country} in {year}?",
            "{year} bank holidays in {country}?",
            "I'm planning {year} vacations. When are the public holidays in {country}?"],
           par=("country", ["Compare the public holidays of {country} and {country#2} in {year}."])),
        Fn(D, "iso_week_number", "ISO 8601 week number of a date.", [Date("date", "Date, YYYY-MM-DD.")],
           ["What ISO week number is {date} in?", "Which calendar week does {date} fall in?",
            "week number of {date}"]),
        Fn(D, "compute_age", "Age in whole years of someone born on a date.",
           [Date("birth_date", "Date of birth, YYYY-MM-DD.", years=(1940, 2015)),
            Date("on_date", "Date to compute the age on, YYYY-MM-DD; today when omitted.", years=(2020, 2030),
                 optional=True)],
           ["How old is someone born on {birth_date}[on_date: on {on_date}]?",
            "Calculate the age for a birth date of {birth_date}[on_date:, as of {on_date}].",
            "My daughter was born on {birth_date}. How old will she be on {on_date}?"],
           ascending=[("birth_date", "on_date")]),
        Fn(D, "set_reminder", "Create a reminder at a date and time.",
           [Str("message", "What to be reminded of.", REMINDERS), Date("date", "Date, YYYY-MM-DD.", years=(2025, 2026)),
            Time("time", "Time, 24-hour HH:MM."),
            Enum("repeat", "How often it repeats.",
                 {"none": ["just once", "one time only"], "daily": ["every day", "daily"],
                  "weekly": ["every week", "weekly"], "monthly": ["every month", "monthly"]}, default="none")],
           ["Remind me to {message} on {date} at {time}[repeat:, {repeat}].",
            "Set a reminder for {date} at {time}: {message}[repeat: ({repeat})].",
            "At {time} on {date}, remind me to {message}.",
            "Can you make sure I remember to {message}? Ping me on {date} at {time}[repeat:, {repeat}]."]),
        Fn(D, "month_calendar", "Calendar grid of one month.",
           [Int("year", "The year.", 1990, 2035, plain=True),
            Int("month", "Month number, 1 to 12.", 1, 12, names={i + 1: [m] for i, m in enumerate(MONTHS)})],
           ["Show me the calendar for {month:name} {year}.", "Print a month view of {month:name} {year}.",
            "Calendar for month {month} of {year}, please.", "What does {month:name} {year} look like on a calendar?"]),
        Fn(D, "next_weekday", "Date of the first given weekday after a date.",
           [Date("date", "Start date, YYYY-MM-DD."), Enum("weekday", "Day of the week.", weekdays)],
           ["What is the date of the first {weekday} after {date}?",
            "Which date is the next {weekday} following {date}?",
            "After {date}, when is the next {weekday}?"]),
        Fn(D, "countdown", "Days remaining until a date.",
           [Date("event_date", "Date, YYYY-MM-DD.", years=(2026, 2028)),
            Str("event_name", "What happens that day, used as a label.", EVENT_NAMES, optional=True)],
           ["How many days until {event_date}[event_name: ({event_name})]?",
            "Start a countdown to[event_name: {event_name} on] {event_date}.",
            "Days left before {event_name} on {event_date}?"]),
    ]


def text_functions():
    D = "text"
    T = lambda pool=TEXTS: Str("text", "The text.", pool, quote=True)
    return [
        Fn(D, "count_words", "Number of words in a text.", [T()],
           ["How many words are in this sentence: {text}?", "Count the words in {text}.", "word count for {text}",
            "I have a strict word limit. How many words is {text}?"],
           par=("text", ["Count the words in {text} and in {text#2}."]), alike="words"),
        Fn(D, "reverse_text", "The text with its characters in reverse order.", [T(TEXTS + ALL_WORDS)],
           ["Reverse the text {text}.", "Write {text} backwards.", "What does {text} look like reversed?",
            "Spell {text} back to front, please."], alike="palindrome"),
        Fn(D, "change_case", "Convert a text to another letter case.",
           [T(), Enum("case", "Target case.", {"upper": ["upper case", "uppercase", "all caps"],
                                             "lower": ["lower case", "lowercase"], "title": ["title case"],
                                             "snake": ["snake_case", "snake case"],
                                             "camel": ["camelCase", "camel case"]})],
           ["Convert {text} to {case}.", "Put {text} in {case}.", "Change the case of {text} to {case}, please.",
            "I need {text} written in {case}."]),
        Fn(D, "translate_text", "Translate a text into another language.",
           [T(), Str("target_language", "Language to translate into (name or ISO 639-1 code).",
                     [i for i in LANGUAGE_POOL if i.value != "English"]),
            Str("source_language", "Language of the text; detected when omitted.",
                [i for i in LANGUAGE_POOL if i.value == "English"], optional=True)],
           ["Translate {text} into {target_language}[source_language: from {source_language}].",
            "How do you say {text} in {target_language}?",
            "Can you put this {source_language} sentence into {target_language}: {text}",
            "{target_language} translation of {text}, please."],
           par=("target_language", ["Translate {text} into {target_language} and into {target_language#2}."])),
        Fn(D, "summarize_text", "A short summary of a text.",
           [Str("text", "The text.", PARAGRAPHS, quote=True),
            Int("max_words", "Upper bound on the summary's length in words.", 5, 30,
                unit=[("{} word", "{} words")], default=20)],
           ["Summarize {text}[max_words: in at most {max_words}].",
            "Give me a short summary of this[max_words: (no more than {max_words})]: {text}",
            "TL;DR[max_words: in {max_words}] please: {text}"]),
        Fn(D, "find_replace", "Replace every occurrence of a substring in a text.",
           [T(), Str("find", "Text to look for.", sorted({w for t in TEXTS for w in t.split(" ")}), quote=True),
            Str("replace", "Replacement text.", WORDS, quote=True),
            Bool("case_sensitive", "Match letter case exactly.", ["matching case exactly", "case-sensitively"],
                 ["ignoring case", "case-insensitively"], default=True)],
           ["In {text}, replace {find} with {replace}[case_sensitive:, {case_sensitive}].",
            "Swap every {find} for {replace} in {text}[case_sensitive: ({case_sensitive})].",
            "Take {text} and change {find} to {replace}."], fix=fix_find),
        Fn(D, "is_palindrome", "Whether a text reads the same backwards.",
           [Str("text", "The text.", PALINDROMES, quote=True),
            Bool("ignore_spaces", "Ignore spaces and letter case.", ["ignoring spaces", "ignoring spaces and case"],
                 ["counting spaces as characters", "without ignoring spaces"], default=True)],
           ["Is {text} a palindrome?",
            "Check whether {text} reads the same backwards[ignore_spaces:, {ignore_spaces}].",
            "palindrome test: {text}[ignore_spaces: ({ignore_spaces})]"],
           par=("text", ["Are {text} and {text#2} palindromes?"]), alike="palindrome"),
        Fn(D, "count_character", "How many times a character occurs in a text (case-insensitive).",
           [T(), Str("character", "A single character.", list("abcdefghijklmnopqrstuvwxyz"), quote=True)],
           ["How many times does the letter {character} appear in {text}?",
            "Count occurrences of {character} in {text}.",
            "In {text}, how often is {character} used?"], fix=fix_character),
        Fn(D, "text.slugify", "Turn a text into a lowercase URL slug.",
           [T(), Str("separator", "Character placed between words.", ["+", "~"], quote=True, default="-")],
           ["Make a URL slug from {text}[separator: using {separator} as the separator].", "Slugify {text}.",
            "I need a web-friendly slug for the title {text}[separator:, with {separator} between words]."]),
        Fn(D, "detect_language", "Detect the language a text is written in.", [T(FOREIGN)],
           ["What language is {text} written in?", "Detect the language of {text}.",
            "A customer wrote {text}. Which language is that?"],
           par=("text", ["Which languages are {text} and {text#2}?"])),
        Fn(D, "spell_check", "Find misspelled words and suggest corrections.",
           [T(TYPO_TEXTS), Int("max_suggestions", "Suggestions per misspelled word.", 1, 5, default=3)],
           ["Check the spelling of {text}[max_suggestions: and give {max_suggestions} suggestions per word].",
            "Any typos in {text}?",
            "Proofread {text} for spelling mistakes[max_suggestions:, up to {max_suggestions} fixes each]."]),
        Fn(D, "get_synonyms", "Synonyms of an English word.",
           [Str("word", "The word.", WORDS), Int("max_results", "Most synonyms to return.", 1, 10, default=5)],
           ["Give me synonyms for {word}[max_results: ({max_results} at most)].", "What's another word for {word}?",
            "List[max_results: {max_results}] synonyms of {word}.", "I keep writing {word}. What could I use instead?"],
           par=("word", ["Synonyms for {word} and for {word#2}, please."])),
        Fn(D, "extract_emails", "Every email address in a text.", [T(EMAIL_TEXTS)],
           ["Pull the email addresses out of this: {text}", "Which email addresses appear in {text}?",
            "Extract all emails from {text}."]),
        Fn(D, "truncate_text", "Shorten a text to a maximum number of characters.",
           [T(), Int("max_length", "Maximum length in characters.", 10, 40,
                     unit=[("{} character", "{} characters"), "{} chars"]),
            Bool("ellipsis", "End a shortened text with '...'.", ["adding an ellipsis", "with ... at the end"],
                 ["without an ellipsis", "with no trailing dots"], default=True)],
           ["Cut {text} down to {max_length}[ellipsis:, {ellipsis}].", "Truncate {text} to at most {max_length}.",
            "This headline is too long for the banner: {text}. Shorten it to {max_length}[ellipsis:, {ellipsis}]."]),
        Fn(D, "word_frequency", "The most frequent words of a text with their counts.",
           [Str("text", "The text.", PARAGRAPHS, quote=True),
            Int("top_n", "How many words to return.", 1, 10, default=5),
            Bool("ignore_stopwords", "Leave out common words such as \"the\" and \"and\".",
                 ["ignoring stop words like the and a", "without stop words"], ["keeping stop words"], default=False)],
           ["What are the most common words in {text}[top_n: (top {top_n})][ignore_stopwords:, {ignore_stopwords}]?",
            "Count word frequencies in this text[ignore_stopwords:, {ignore_stopwords}]: {text}",
            "Give me the top {top_n} words of {text}."], alike="words"),
        Fn(D, "is_anagram", "Whether two words are anagrams of each other.",
           [Str("word_a", "First word.", ALL_WORDS), Str("word_b", "Second word.", ALL_WORDS)],
           ["Are {word_a} and {word_b} anagrams?", "Check if {word_a} is an anagram of {word_b}.",
            "Can the letters of {word_a} be rearranged to spell {word_b}?"], fix=fix_anagram),
        Fn(D, "caesar_cipher", "Shift every letter of a text by a fixed number of places.",
           [T(), Int("shift", "Places to shift, 1 to 25.", 1, 25),
            Bool("decode", "Shift backwards to decode.", ["decoding it rather than encoding"], ["encoding it"],
                 default=False)],
           ["Encrypt {text} with a Caesar shift of {shift}.",
            "Apply a Caesar cipher with shift {shift} to {text}[decode:, {decode}].",
            ("Decode the Caesar cipher text {text}; it was shifted by {shift}.", {"decode": True}),
            "Rotate the letters of {text} by {shift} places."]),
        Fn(D, "edit_distance", "Levenshtein distance between two strings.",
           [Str("source", "First string.", WORDS), Str("target", "Second string.", WORDS)],
           ["What is the Levenshtein distance between {source} and {target}?",
            "How many single-letter edits turn {source} into {target}?", "edit distance from {source} to {target}"],
           differ=[("source", "target")]),
    ]


def finance_functions():
    D = "finance"
    money = lambda name, desc, lo=100, hi=100000, step=50, **kw: Num(name, desc, lo, hi, step, unit=U_USD,
                                                                     thousands=True, wordy=0, **kw)
    rate = lambda name="annual_rate", desc="Annual interest rate in percent (5 means 5%).", **kw: \
        Num(name, desc, 0.5, 12, 0.25, unit=U_PCT, **kw)
    return [
        Fn(D, "compound_interest", "Final balance of a deposit with compound interest.",
           [money("principal", "Initial deposit."), rate(), Int("years", "Number of years.", 1, 40, unit=U_YEARS),
            Int("compounds_per_year", "How often interest is compounded per year.", 1, 365,
                choices=[1, 2, 4, 12, 365], default=12,
                names={1: ["annually", "yearly"], 2: ["semi-annually", "twice a year"], 4: ["quarterly"],
                       12: ["monthly"], 365: ["daily"]})],
           ["If I invest {principal} at {annual_rate} a year for {years}[compounds_per_year:, compounded "
            "{compounds_per_year:name}], how much will I have?",
            "Compound interest on {principal}: rate {annual_rate}, {years}[compounds_per_year:, compounding "
            "{compounds_per_year:name}].",
            "What does {principal} grow to after {years} at {annual_rate} annual interest[compounds_per_year:, "
            "compounded {compounds_per_year:name}]?",
            "My savings account pays {annual_rate}[compounds_per_year: compounded {compounds_per_year:name}]. I'm "
            "putting in {principal} for {years}. What will the balance be?"],
           alike="growth"),
        Fn(D, "simple_interest", "Interest earned without compounding.",
           [money("principal", "Amount lent or deposited."), rate(),
            Num("years", "Duration in years.", 0.5, 30, 0.5, unit=U_YEARS)],
           ["How much simple interest does {principal} earn at {annual_rate} over {years}?",
            "Simple interest: principal {principal}, rate {annual_rate}, time {years}.",
            "I lend a friend {principal} for {years} at {annual_rate} simple interest. How much interest is that?"]),
        Fn(D, "loan_payment", "Monthly payment of an amortizing loan.",
           [money("principal", "Amount borrowed.", 1000, 500000, 500), rate(),
            Int("months", "Loan term in months.", 6, 360, unit=U_MONTHS)],
           ["What's the monthly payment on a {principal} loan at {annual_rate} over {months}?",
            "I'm borrowing {principal} for {months} at {annual_rate} interest. What's the monthly installment?",
            "Monthly payment: loan {principal}, rate {annual_rate}, term {months}.",
            "Car loan of {principal}, {annual_rate} APR, {months}. How much per month?"],
           par=("principal", ["Compare monthly payments for loans of {principal} and {principal#2}, both at "
                              "{annual_rate} over {months}."])),
        Fn(D, "get_stock_price", "Latest share price of a listed company.",
           [Str("ticker", "Stock ticker symbol, e.g. XOM.", TICKER_POOL),
            Bool("include_after_hours", "Include after-hours trading.", ["including after-hours trading"],
                 ["regular session only"], default=False)],
           ["What's {ticker} trading at[include_after_hours:, {include_after_hours}]?",
            "Current share price of {ticker}?",
            "How much is one share of {ticker} right now[include_after_hours: ({include_after_hours})]?",
            "stock quote {ticker}"],
           par=("ticker", ["What are {ticker} and {ticker#2} trading at?",
                           "Get me the share prices of {ticker} and {ticker#2}."])),
        Fn(D, "get_stock_history", "Historical share prices between two dates.",
           [Str("ticker", "Stock ticker symbol.", TICKER_POOL),
            Date("start_date", "First date, YYYY-MM-DD.", years=(2015, 2024)),
            Date("end_date", "Last date, YYYY-MM-DD.", years=(2015, 2024)),
            Enum("interval", "Spacing of the prices.",
                 {"daily": ["daily"], "weekly": ["weekly"], "monthly": ["monthly"]},
                 default="daily")],
           ["Show the price history of {ticker} from {start_date} to {end_date}[interval:, {interval}].",
            "Get[interval: {interval}] prices for {ticker} between {start_date} and {end_date}.",
            "How did {ticker} trade from {start_date} until {end_date}[interval: ({interval} prices)]?"],
           ascending=[("start_date", "end_date")]),
        Fn(D, "return_on_investment", "Return on investment in percent.",
           [money("initial_investment", "Amount invested."), money("final_value", "Value now.")],
           ["I put {initial_investment} in and it's now worth {final_value}. What's my ROI?",
            "ROI for an investment of {initial_investment} that ended at {final_value}?",
            "Return on investment: cost {initial_investment}, current value {final_value}."]),
        Fn(D, "future_value", "Future value of a lump sum growing at a fixed annual rate (compounded yearly).",
           [money("present_value", "Amount today."), rate("annual_rate", "Annual growth rate in percent."),
            Int("years", "Number of years.", 1, 50, unit=U_YEARS)],
           ["What will {present_value} be worth in {years} at {annual_rate} a year?",
            "Future value of {present_value} after {years} growing {annual_rate} annually?",
            "If house prices rise {annual_rate} per year, what will a {present_value} house cost in {years}?"],
           alike="growth"),
        Fn(D, "present_value", "Present value of a future amount discounted at a fixed annual rate.",
           [money("future_amount", "Amount received in the future."),
            rate("discount_rate", "Annual discount rate in percent."),
            Int("years", "Years until the amount is received.", 1, 50, unit=U_YEARS)],
           ["How much do I need to invest today to have {future_amount} in {years} at {discount_rate} a year?",
            "Present value of {future_amount} received in {years}, discounted at {discount_rate}?",
            "What is {future_amount} paid {years} from now worth today at a discount rate of {discount_rate}?"]),
        Fn(D, "calculate_tip", "Tip and per-person total for a restaurant bill.",
           [money("bill_amount", "Bill before tip.", 10, 500, 0.5),
            Num("tip_percent", "Tip in percent.", 10, 25, 1, unit=U_PCT, default=15),
            Int("people", "Number of people splitting the bill.", 2, 8, default=1, mention_default=False)],
           ["What's the tip on a {bill_amount} bill[tip_percent: at {tip_percent}][people:, split between {people} "
            "people]?",
            "We're {people} people and the bill is {bill_amount}. How much does each of us pay with a {tip_percent} "
            "tip?",
            "Tip calculator: bill {bill_amount}[tip_percent:, {tip_percent} tip].",
            "Our dinner came to {bill_amount}[people: for {people} of us]. What should we leave as a tip[tip_percent: "
            "at {tip_percent}]?"]),
        Fn(D, "sales_tax", "Sales tax due on a purchase.",
           [money("amount", "Price before tax.", 1, 5000, 0.5),
            Num("tax_rate", "Tax rate in percent.", 1, 25, 0.25, unit=U_PCT)],
           ["How much sales tax is due on {amount} at {tax_rate}?",
            "Tax on a {amount} purchase with a {tax_rate} rate?",
            "What's the tax if I buy something for {amount} and the rate is {tax_rate}?"]),
        Fn(D, "discount_price", "Price after a percentage discount.",
           [money("original_price", "Price before the discount.", 1, 2000, 0.5),
            Num("discount_percent", "Discount in percent.", 5, 80, 5, unit=U_PCT)],
           ["A jacket costs {original_price} and is {discount_percent} off. What's the sale price?",
            "Apply a {discount_percent} discount to {original_price}.",
            "What do I pay for a {original_price} item with {discount_percent} off?"],
           par=("original_price", ["What are {original_price} and {original_price#2} after a {discount_percent} "
                                   "discount?"])),
        Fn(D, "break_even_units", "Units that must be sold to cover fixed costs.",
           [money("fixed_costs", "Total fixed costs."), money("price_per_unit", "Selling price per unit.", 2, 500, 0.5),
            money("variable_cost_per_unit", "Variable cost per unit.", 1, 400, 0.5)],
           ["My fixed costs are {fixed_costs}, I sell each unit for {price_per_unit} and each costs "
            "{variable_cost_per_unit} to make. How many units do I need to sell to break even?",
            "Break-even point: fixed costs {fixed_costs}, unit price {price_per_unit}, variable cost "
            "{variable_cost_per_unit} per unit.",
            "How many mugs must I sell at {price_per_unit} each to break even if they cost {variable_cost_per_unit} "
            "each to make and my fixed costs are {fixed_costs}?"],
           ascending=[("variable_cost_per_unit", "price_per_unit")]),
        Fn(D, "portfolio_value", "Current market value of a set of stock holdings.",
           [List("holdings", "Positions held.", holding(), 1, 4, key=lambda h: h["ticker"])],
           ["What's my portfolio worth? I hold {holdings}.", "Value these holdings at today's prices: {holdings}.",
            "I own {holdings}. How much is that worth now?"]),
        Fn(D, "adjust_for_inflation", "Value of an amount of money from one year in another year's money.",
           [money("amount", "The amount.", 1, 100000, 1),
            Int("from_year", "Year of the amount.", 1950, 2015, plain=True),
            Int("to_year", "Year to express it in.", 1960, 2024, plain=True),
            Str("country", "Country whose price index is used.", COUNTRIES, default="United States")],
           ["What is {amount} from {from_year} worth in {to_year}[country: in {country}]?",
            "Adjust {amount} in {from_year} money to {to_year}[country: using {country}'s inflation].",
            "My grandfather earned {amount} a year in {from_year}. What's that in {to_year} money[country: in "
            "{country}]?"],
           ascending=[("from_year", "to_year")]),
        Fn(D, "get_crypto_price", "Current price of a cryptocurrency.",
           [Str("symbol", "Cryptocurrency symbol, e.g. LTC.", [Item(k, [k], v) for k, v in CRYPTO.items()]),
            Str("currency", "ISO 4217 code of the currency to price in.", CURRENCY_POOL, default="USD")],
           ["What's the price of {symbol}[currency: in {currency}]?",
            "How much is one {symbol} worth right now[currency: in {currency}]?",
            "{symbol} price[currency: in {currency}]"],
           par=("symbol", ["What are {symbol} and {symbol#2} worth right now[currency: in {currency}]?"])),
        Fn(D, "straight_line_depreciation", "Yearly depreciation of an asset (straight-line method).",
           [money("cost", "Purchase cost."), money("salvage_value", "Value at the end of its life.", 0, 50000, 50),
            Int("useful_life_years", "Useful life in years.", 2, 30, unit=U_YEARS)],
           ["A machine costs {cost}, will be worth {salvage_value} at the end and lasts {useful_life_years}. What's "
            "the yearly depreciation?",
            "Straight-line depreciation: cost {cost}, salvage {salvage_value}, life {useful_life_years}.",
            "We bought a van for {cost}. After {useful_life_years} we expect to sell it for {salvage_value}. How much "
            "does it depreciate per year?"],
           ascending=[("salvage_value", "cost")]),
        Fn(D, "savings_goal_months", "Months needed to reach a savings goal with fixed monthly deposits.",
           [money("goal_amount", "Target amount.", 500, 100000, 100),
            money("monthly_saving", "Saved each month.", 10, 5000, 10),
            money("current_savings", "Amount already saved.", 0, 20000, 50, default=0)],
           ["How many months until I reach {goal_amount} if I save {monthly_saving} a month[current_savings: and "
            "already have {current_savings}]?",
            "I want {goal_amount} for a new car. Saving {monthly_saving} per month[current_savings: on top of the "
            "{current_savings} I have], how long will it take?",
            "Savings goal {goal_amount}, {monthly_saving} monthly[current_savings:, starting from {current_savings}]: "
            "how many months?"]),
    ]


def physics_functions():
    D = "physics"
    G = lambda: Num("gravity", "Gravitational acceleration in m/s^2.", 1.5, 25, 0.01, unit=["{} m/s²", "{} m/s^2"],
                    default=9.81, wordy=0)
    ACC = ["{} m/s²", "{} m/s^2", "{} meters per second squared"]
    mass = lambda name="mass_kg", desc="Mass in kilograms.", lo=0.5, hi=500: Num(name, desc, lo, hi, 0.5, unit=U_KG)
    return [
        Fn(D, "kinetic_energy", "Kinetic energy of a moving body, in joules.",
           [mass(), Num("velocity_mps", "Speed in meters per second.", 0.5, 100, 0.5, unit=U_MPS)],
           ["What is the kinetic energy of an object of {mass_kg} moving at {velocity_mps}?",
            "A cart with a mass of {mass_kg} rolls at {velocity_mps}. How much kinetic energy does it have?",
            "Kinetic energy: velocity {velocity_mps}, mass {mass_kg}."],
           par=("velocity_mps", ["Kinetic energy of {mass_kg} at {velocity_mps} and at {velocity_mps#2}?"])),
        Fn(D, "potential_energy", "Gravitational potential energy, in joules.",
           [mass(), Num("height_m", "Height in meters.", 0.5, 500, 0.5, unit=U_M), G()],
           ["How much potential energy does a rock of {mass_kg} have at a height of {height_m}[gravity: with g = "
            "{gravity}]?",
            ("On the Moon, where g is 1.62 m/s², what is the potential energy of {mass_kg} lifted {height_m}?",
             {"gravity": 1.62}),
            "Potential energy for mass {mass_kg} raised by {height_m}[gravity:, gravity {gravity}]."]),
        Fn(D, "final_velocity", "Final velocity under constant acceleration.",
           [Num("initial_velocity", "Initial velocity in m/s.", 0, 50, 0.5, unit=U_MPS),
            Num("acceleration", "Acceleration in m/s^2.", 0.5, 20, 0.5, unit=ACC),
            Num("time_s", "Time in seconds.", 0.5, 60, 0.5, unit=U_S)],
           ["A car starts at {initial_velocity} and accelerates at {acceleration} for {time_s}. What is its final "
            "speed?",
            "Final velocity after {time_s} with acceleration {acceleration} and initial velocity {initial_velocity}?",
            "Starting from {initial_velocity}, how fast is a bike going after accelerating at {acceleration} for "
            "{time_s}?"]),
        Fn(D, "free_fall_time", "Time for an object to fall from rest through a height (no air resistance).",
           [Num("height_m", "Height in meters.", 1, 1000, 0.5, unit=U_M), G()],
           ["How long does it take an object to fall {height_m}[gravity: when g = {gravity}]?",
            "If I drop a stone from {height_m}, how long until it lands?",
            "Free-fall time from a height of {height_m}[gravity: with gravity at {gravity}]?"],
           par=("height_m", ["Compare fall times from {height_m} and from {height_m#2}."])),
        Fn(D, "ohms_law_current", "Current through a resistor from voltage and resistance (I = V/R).",
           [Num("voltage", "Voltage in volts.", 1, 240, 0.5, unit=U_V),
            Num("resistance", "Resistance in ohms.", 1, 10000, 1, unit=U_OHM)],
           ["What current flows through a resistor of {resistance} with {voltage} across it?",
            "Current for {voltage} and {resistance}?",
            "Using Ohm's law, find the current when V = {voltage} and R = {resistance}."]),
        Fn(D, "electrical_power", "Electrical power from voltage and current (P = V x I).",
           [Num("voltage", "Voltage in volts.", 1, 240, 0.5, unit=U_V),
            Num("current", "Current in amperes.", 0.1, 30, 0.1, unit=U_A)],
           ["How much power does a device draw at {voltage} and {current}?",
            "Power for a circuit with {current} at {voltage}?",
            "My heater uses {current} on a supply of {voltage}. How many watts is that?"]),
        Fn(D, "density", "Density from mass and volume, in kg/m^3.",
           [mass(), Num("volume_m3", "Volume in cubic meters.", 0.01, 10, 0.01, unit=U_M3)],
           ["What is the density of something with a mass of {mass_kg} and a volume of {volume_m3}?",
            "Density for {mass_kg} occupying {volume_m3}?",
            "A block takes up {volume_m3} and weighs {mass_kg}. How dense is it?"]),
        Fn(D, "projectile_range", "Horizontal range of a projectile launched from the ground.",
           [Num("speed_mps", "Launch speed in m/s.", 1, 100, 0.5, unit=U_MPS),
            Num("angle_deg", "Launch angle in degrees above the horizontal.", 5, 85, 1, unit=U_DEG), G()],
           ["How far does a ball launched at {speed_mps} at an angle of {angle_deg} travel?",
            "Range of a projectile: angle {angle_deg}, speed {speed_mps}[gravity:, g = {gravity}].",
            "I kick a ball at {angle_deg} with a speed of {speed_mps}. "
            "Where does it land[gravity: if g is {gravity}]?"],
           par=("angle_deg",
                ["Compare the range at {angle_deg} and at {angle_deg#2} for a launch speed of {speed_mps}."])),
        Fn(D, "wavelength", "Wavelength of a wave from its frequency and speed.",
           [Num("frequency_hz", "Frequency in hertz.", 20, 5000000, 10, unit=U_HZ, thousands=True, wordy=0),
            Num("wave_speed_mps", "Propagation speed in m/s (light in vacuum by default).", 300, 6000, 1, unit=U_MPS,
                default=299792458)],
           ["What is the wavelength of a {frequency_hz} wave[wave_speed_mps: travelling at {wave_speed_mps}]?",
            "A radio station broadcasts at {frequency_hz}. What's the wavelength?",
            ("What's the wavelength of a {frequency_hz} sound in air, where sound travels at 343 m/s?",
             {"wave_speed_mps": 343})]),
        Fn(D, "momentum", "Linear momentum of a moving body (p = m x v).",
           [mass(), Num("velocity_mps", "Velocity in m/s.", 0.5, 100, 0.5, unit=U_MPS)],
           ["What is the momentum of an object with a mass of {mass_kg} moving at {velocity_mps}?",
            "Momentum for mass {mass_kg} and velocity {velocity_mps}?",
            "A bowling ball of {mass_kg} rolls at {velocity_mps}. How much momentum does it carry?"]),
        Fn(D, "net_force", "Force needed to give a mass an acceleration (F = m x a).",
           [mass(), Num("acceleration", "Acceleration in m/s^2.", 0.5, 30, 0.5, unit=ACC)],
           ["What force is needed to accelerate {mass_kg} at {acceleration}?",
            "Newton's second law with m = {mass_kg} and a = {acceleration}: what's F?",
            "How hard do I have to push a sled weighing {mass_kg} to make it accelerate at {acceleration}?"]),
        Fn(D, "pendulum_period", "Period of a simple pendulum.",
           [Num("length_m", "Length in meters.", 0.1, 20, 0.1, unit=U_M), G()],
           ["What's the period of a pendulum {length_m} long[gravity: where g = {gravity}]?",
            "How long does one full swing of a pendulum {length_m} long take?",
            "Period of a simple pendulum: length {length_m}[gravity:, gravity {gravity}]."],
           par=("length_m", ["Compare the periods of pendulums {length_m} and {length_m#2} long."])),
        Fn(D, "equivalent_resistance", "Total resistance of resistors in series or in parallel.",
           [List("resistances", "Resistances in ohms.", Num("r", "", 1, 1000, 1), 2, 5, distinct=False),
            Enum("arrangement", "How they are connected.", {"series": ["series"], "parallel": ["parallel"]},
                 default="series")],
           ["What's the total resistance of {resistances} ohm resistors in {arrangement}?",
            "Combine resistors of {resistances} ohms[arrangement: in {arrangement}].",
            "Equivalent resistance for {resistances} ohms wired in {arrangement}?"]),
        Fn(D, "gravitational_force", "Newtonian gravitational attraction between two masses.",
           [mass("mass_1_kg", "First mass in kilograms.", 1, 1000),
            mass("mass_2_kg", "Second mass in kilograms.", 1, 1000),
            Num("distance_m", "Distance between the centres in meters.", 0.1, 100, 0.1, unit=U_M)],
           ["What's the gravitational force between masses of {mass_1_kg} and {mass_2_kg} placed {distance_m} apart?",
            "Gravity between m1 = {mass_1_kg} and m2 = {mass_2_kg} at a distance of {distance_m}?",
            "Two boulders of {mass_1_kg} and {mass_2_kg} sit {distance_m} apart. How strongly do they attract?"]),
        Fn(D, "ideal_gas_pressure", "Pressure of an ideal gas (PV = nRT), in pascals.",
           [Num("moles", "Amount of gas in moles.", 0.1, 100, 0.1, unit=[("{} mole", "{} moles"), "{} mol"]),
            Num("temperature_k", "Temperature in kelvin.", 100, 1000, 1, unit=U_KELVIN),
            Num("volume_m3", "Volume in cubic meters.", 0.01, 10, 0.01, unit=U_M3)],
           ["What pressure do {moles} of gas exert at {temperature_k} in {volume_m3}?",
            "Ideal gas pressure: n = {moles}, T = {temperature_k}, V = {volume_m3}.",
            "A tank of {volume_m3} holds {moles} of gas at {temperature_k}. What's the pressure?"]),
        Fn(D, "heat_energy", "Heat needed to change a mass's temperature (Q = m c dT).",
           [mass(lo=0.5, hi=100), Num("specific_heat", "Specific heat in J/(kg K).", 100, 5000, 1),
            Num("temperature_change", "Temperature change in kelvin (or degrees Celsius).", 1, 100, 0.5,
                unit=[("{} degree", "{} degrees"), "{} K", "{} °C"])],
           ["How much energy does it take to heat {mass_kg} of a material with specific heat {specific_heat} J/(kg K) "
            "by {temperature_change}?",
            ("How much heat does it take to warm {mass_kg} of water by {temperature_change}? Use 4186 J/(kg K) for "
             "water.",
             {"specific_heat": 4186}),
            "Heat needed: m = {mass_kg}, c = {specific_heat} J/(kg K), temperature rise {temperature_change}."]),
        Fn(D, "speed_of_sound", "Speed of sound in dry air at a temperature.",
           [Num("temperature_c", "Air temperature in degrees Celsius.", -30, 45, 0.5, unit=U_CELSIUS)],
           ["How fast does sound travel in air at {temperature_c}?", "Speed of sound at {temperature_c}?",
            "It's {temperature_c} outside. How fast does thunder travel?"],
           par=("temperature_c", ["Compare the speed of sound at {temperature_c} and at {temperature_c#2}."])),
    ]


def lists_functions():
    D = "lists"
    nums = lambda lo=-50, hi=100, step=1, n=(3, 7), distinct=False, name="numbers", desc="The numbers.": \
        List(name, desc, Num("x", "", lo, hi, step), n[0], n[1], distinct=distinct)
    words_list = lambda name="items", desc="The items.", n=(3, 7), distinct=True: \
        List(name, desc, Str("item", "", GROCERIES), n[0], n[1], distinct=distinct)
    return [
        Fn(D, "list_mean", "Arithmetic mean of a list of numbers.", [nums()],
           ["What is the average of {numbers}?", "Mean of {numbers}",
            "My test scores were {numbers}. What's my average?",
            "Compute the arithmetic mean of these values: {numbers}."],
           par=("numbers", ["What are the averages of {numbers:br} and of {numbers#2:br}?"])),
        Fn(D, "stats.median", "Median of a list of numbers.", [nums()],
           ["Find the median of {numbers}.", "What's the middle value of {numbers}?", "median: {numbers}",
            "House prices on my street (in thousands) are {numbers}. What's the median?"]),
        Fn(D, "list_mode", "Most frequent value in a list of numbers.", [nums(1, 9, n=(5, 9))],
           ["Which value appears most often in {numbers}?", "What's the mode of {numbers}?",
            "Find the most common number among {numbers}."]),
        Fn(D, "standard_deviation", "Standard deviation of a list of numbers.",
           [nums(), Bool("sample", "Use the sample formula (divide by n - 1) instead of the population one.",
                         ["treating them as a sample", "using the sample formula (n - 1)"],
                         ["treating them as the whole population", "using the population formula"], default=False)],
           ["What's the standard deviation of {numbers}[sample:, {sample}]?",
            "Compute the spread (standard deviation) of {numbers}[sample: ({sample})].",
            "std dev of {numbers}[sample:, {sample}]"]),
        Fn(D, "sort_numbers", "Sort a list of numbers.",
           [nums(), Bool("descending", "Largest first instead of smallest first.",
                         ["from largest to smallest", "in descending order"],
                         ["from smallest to largest", "in ascending order"], default=False)],
           ["Sort {numbers}[descending: {descending}].", "Put these in order[descending: ({descending})]: {numbers}",
            ("Sort {numbers} from largest to smallest.", {"descending": True}), "Can you sort this list: {numbers}?"],
           alike="order"),
        Fn(D, "find_max", "Largest value in a list of numbers.", [nums()],
           ["What's the largest number in {numbers}?", "Which of {numbers} is the biggest?", "max of {numbers}"],
           alike="order"),
        Fn(D, "sum_numbers", "Sum of a list of numbers.", [nums(1, 200, 0.5)],
           ["Add up {numbers}.", "What's the total of {numbers}?",
            "I spent {numbers} dollars this week. How much is that altogether?", "sum {numbers}"],
           par=("numbers", ["Give me the sum of {numbers:br} and, separately, of {numbers#2:br}."])),
        Fn(D, "filter_greater_than", "Keep the numbers strictly greater than a threshold.",
           [nums(), Num("threshold", "Values must be greater than this.", -20, 80, 1)],
           ["Which of {numbers} are greater than {threshold}?",
            "Keep only the values above {threshold} from {numbers}.",
            "From {numbers}, drop everything at or below {threshold}."]),
        Fn(D, "remove_duplicates", "Remove repeated items, keeping the first occurrence of each.",
           [words_list(distinct=False)],
           ["Remove the duplicates from {items}.", "Deduplicate this list: {items}",
            "My shopping list has repeats: {items}. Clean it up."], fix=fix_repeat),
        Fn(D, "list_intersection", "Items present in both lists.",
           [List("list_a", "First list.", Str("item", "", INGREDIENTS), 3, 6, brackets=True),
            List("list_b", "Second list.", Str("item", "", INGREDIENTS), 3, 6, brackets=True)],
           ["Which items appear in both {list_a} and {list_b}?", "Intersect {list_a} with {list_b}.",
            "I have {list_a} and my flatmate has {list_b}. What do we both have?"], fix=fix_overlap),
        Fn(D, "percentile", "A percentile of a list of numbers.",
           [nums(n=(5, 9)), Int("percentile", "Percentile, 0 to 100.", 1, 99)],
           ["What is the {percentile:ord} percentile of {numbers}?",
            "Find percentile {percentile} of {numbers}.",
            "Of {numbers}, which value marks the {percentile:ord} percentile?"]),
        Fn(D, "normalize", "Rescale a list of numbers.",
           [nums(), Enum("method", "Rescaling method.",
                         {"minmax": ["min-max scaling"], "zscore": ["z-scores", "standard scores"]}, default="minmax")],
           ["Normalize {numbers}[method: using {method}].", "Scale {numbers} to the range 0 to 1.",
            ("Convert {numbers} to z-scores.", {"method": "zscore"})]),
        Fn(D, "cumulative_sum", "Running totals of a list of numbers.", [nums()],
           ["Give me the running total of {numbers}.", "cumulative sums of {numbers}",
            "My monthly sales were {numbers}. What are the year-to-date totals after each month?"]),
        Fn(D, "chunk_list", "Split a list into consecutive groups of a given size.",
           [words_list(n=(4, 8)), Int("size", "Items per group.", 2, 4)],
           ["Split {items} into groups of {size}.", "Chunk this list into pieces of {size}: {items}",
            "Group {items} in batches of {size}."]),
        Fn(D, "count_occurrences", "How many times a value occurs in a list.",
           [words_list(distinct=False), Str("value", "The value to count.", GROCERIES)],
           ["How many times does {value} appear in {items}?", "Count {value} in the list {items}.",
            "In {items}, how often is {value} listed?"], fix=fix_occurrence),
        Fn(D, "moving_average", "Moving average over a sliding window.",
           [nums(n=(5, 9)), Int("window", "Window size.", 2, 5, default=3)],
           ["Compute the moving average of {numbers}[window: with a window of {window}].",
            "Smooth {numbers} with a moving average of window {window}.",
            "Rolling mean of {numbers}[window:, window size {window}]"]),
        Fn(D, "dot_product", "Dot product of two vectors of equal length.",
           [List("vector_a", "First vector.", Num("x", "", -10, 10, 1), 2, 5, distinct=False, brackets=True),
            List("vector_b", "Second vector.", Num("x", "", -10, 10, 1), 2, 5, distinct=False, brackets=True)],
           ["What's the dot product of {vector_a} and {vector_b}?",
            "Multiply {vector_a} and {vector_b} element by element and sum the result.",
            "dot({vector_a}, {vector_b})?"],
           fix=fix_same_length),
        Fn(D, "top_k", "The k largest values of a list, largest first.",
           [nums(n=(5, 9)), Int("k", "How many values to return.", 2, 5, default=3)],
           ["What are the[k: {k}] largest values in {numbers}?", "Give me the top {k} of {numbers}.",
            "Highest[k: {k}] numbers from {numbers}, please."], alike="order"),
    ]


def lookup_functions():
    D = "lookup"
    C = lambda: Str("country", "Country name.", COUNTRIES)
    return [
        Fn(D, "get_country_capital", "Capital city of a country.", [C()],
           ["What is the capital of {country}?", "Capital city of {country}?",
            "Which city is the capital of {country}?",
            "I always forget: what's the capital of {country}?"],
           par=("country", ["What are the capitals of {country} and {country#2}?"])),
        Fn(D, "get_country_population", "Population of a country.",
           [C(), Int("year", "Year of the estimate; the latest when omitted.", 1960, 2023, plain=True, optional=True)],
           ["What is the population of {country}[year: in {year}]?", "How many people live in {country}?",
            "Population of {country}[year:, {year}]", "How many inhabitants did {country} have in {year}?"],
           par=("country", ["Compare the populations of {country} and {country#2}[year: in {year}]."])),
        Fn(D, "get_element_info", "Facts about a chemical element.",
           [Str("element", "Element name or symbol.", ELEMENT_POOL),
            Enum("property", "Which fact to return.", {"atomic_number": ["atomic number"],
                                                      "atomic_mass": ["atomic mass", "atomic weight"],
                                                      "symbol": ["chemical symbol"], "melting_point": ["melting point"],
                                                      "all": ["full details"]},
                 default="all", mention_default=False)],
           ["I need the {property} of {element}.", "Tell me about the element {element}.",
            "Look up {element} in the periodic table[property: and give me its {property}]."],
           par=("element", ["Compare {element} and {element#2}[property:: their {property}]."])),
        Fn(D, "get_airport_code", "IATA code of a city's main airport.", [city_param()],
           ["What's the airport code for {city}?", "Which IATA code does the main airport in {city} have?",
            "I'm booking a flight to {city}. What code do I type for the airport?"],
           par=("city", ["Airport codes for {city} and {city#2}?"])),
        Fn(D, "get_word_definition", "Dictionary definition of an English word.",
           [Str("word", "The word.", WORDS),
            Bool("include_examples", "Also return example sentences.", ["with example sentences"], ["without examples"],
                 default=False)],
           ["Define {word}[include_examples:, {include_examples}].", "What does {word} mean?",
            "Look up the meaning of {word}[include_examples: ({include_examples})]."]),
        Fn(D, "get_country_currency", "Official currency of a country.", [C()],
           ["What currency do they use in {country}?", "Which currency is official in {country}?",
            "Going to {country} next month. What money should I bring?"],
           par=("country", ["Currencies of {country} and {country#2}?"])),
        Fn(D, "get_city_timezone", "Time zone of a city.", [city_param()],
           ["Which time zone is {city} in?", "What's the time zone of {city}?", "time zone for {city}"]),
        Fn(D, "get_dialing_code", "International calling code of a country.", [C()],
           ["What's the international dialing code for {country}?", "Which country code do I dial to call {country}?",
            "phone prefix for {country}"]),
        Fn(D, "get_country_languages", "Official and widely spoken languages of a country.", [C()],
           ["What languages are spoken in {country}?", "Official languages of {country}?",
            "If I move to {country}, which language should I learn?"]),
        Fn(D, "get_planet_info", "Facts about a planet of the Solar System.",
           [Enum("planet", "Planet name.", {p.lower(): [p] for p in ["Mercury", "Venus", "Earth", "Mars", "Jupiter",
                                                                     "Saturn", "Uranus", "Neptune"]}),
            Enum("property", "Which fact to return.",
                 {"radius": ["radius"], "mass": ["mass"], "moons": ["number of moons"],
                  "distance_from_sun": ["distance from the Sun"], "all": ["full profile"]},
                 default="all", mention_default=False)],
           ["Tell me about {planet}.", ("How many moons does {planet} have?", {"property": "moons"}),
            ("What is the radius of {planet}?", {"property": "radius"}), "Look up the {property} of {planet}.",
            "I need {planet}'s {property}."],
           par=("planet", ["Compare {planet} and {planet#2}."])),
        Fn(D, "get_book_info", "Publication details of a book.",
           [Str("title", "Book title.", BOOKS, quote=True),
            Str("author", "Author, to disambiguate.", AUTHORS, optional=True)],
           ["Find details about the book {title}[author: by {author}].",
            "Who published {title}[author: by {author}], and when?", "Look up {title}[author: ({author})]."]),
        Fn(D, "get_movie_info", "Details of a film.",
           [Str("title", "Film title.", MOVIES, quote=True),
            Int("year", "Release year, to disambiguate.", 1970, 2024, plain=True, optional=True)],
           ["Look up the film {title}[year: from {year}].", "What's the movie {title}[year: ({year})] about?",
            "Who is in the cast of {title}[year:, the {year} film]?"]),
        Fn(D, "get_zip_code_info", "City and state for a US ZIP code.", [Str("zip_code", "Five-digit ZIP code.", ZIPS)],
           ["Which city does ZIP code {zip_code} belong to?", "Where is ZIP {zip_code}?",
            "Look up the ZIP code {zip_code}."],
           par=("zip_code", ["Where are the ZIP codes {zip_code} and {zip_code#2}?"])),
        Fn(D, "get_distance_between_cities", "Great-circle distance between two cities.",
           [city_param("origin", "First city."), city_param("destination", "Second city."),
            Enum("unit", "Distance unit.", {"km": ["kilometers", "km"], "mi": ["miles"]}, default="km")],
           ["How far is {origin} from {destination}[unit: in {unit}]?",
            "Distance from {origin} to {destination}[unit:, in {unit}]",
            "I'm flying from {origin} to {destination}. How far is that[unit: in {unit}]?"],
           differ=[("origin", "destination")]),
        Fn(D, "get_nutrition_facts", "Calories and macronutrients of a food.",
           [Str("food", "Food name.", FOODS),
            Num("serving_grams", "Serving size in grams.", 10, 500, 5, unit=["{} g", "{} grams"], default=100)],
           ["Nutrition facts for {food}[serving_grams: per {serving_grams}]?",
            "How many calories are in[serving_grams: {serving_grams} of] {food}?",
            "What's the protein content of {food}[serving_grams: per serving of {serving_grams}]?"],
           par=("food", ["Compare the nutrition of {food} and {food#2}[serving_grams: per {serving_grams}]."])),
        Fn(D, "get_ip_location", "Approximate location of an IP address.", [Str("ip_address", "IPv4 address.", IPS)],
           ["Where is the IP address {ip_address} located?", "Geolocate {ip_address}.",
            "Someone logged in from {ip_address}. Which country is that?"]),
        Fn(D, "search_recipes", "Recipes that use given ingredients.",
           [List("ingredients", "Ingredients to use.", Str("ingredient", "", INGREDIENTS), 1, 4),
            Int("max_results", "Most recipes to return.", 1, 10, default=5),
            Bool("vegetarian", "Only vegetarian recipes.", ["vegetarian only", "no meat"], ["meat is fine"],
                 default=False,
                 mention_default=False)],
           ["Find recipes with {ingredients}[vegetarian: ({vegetarian})][max_results:, {max_results} at most].",
            "What can I cook with {ingredients}[vegetarian: ({vegetarian})]?",
            "Suggest[max_results: {max_results}] dishes using {ingredients}."], fix=fix_vegetarian),
        Fn(D, "find_restaurants", "Restaurants near a place.",
           [restaurant_location(), Str("cuisine", "Type of food; any when omitted.", CUISINES, optional=True),
            Bool("open_now", "Only places open right now.", ["open right now", "open at the moment"], ["open or not"],
                 default=False, mention_default=False)],
           ["Find[cuisine: {cuisine}] restaurants {location}[open_now: that are {open_now}].",
            "Any good[cuisine: {cuisine}] places to eat {location}?",
            "I'm hungry {location}. "
            "Where can I get[cuisine: {cuisine}] food[open_now: at a place that's {open_now}]?"]),
    ]


def catalogue():
    fns = (math_functions() + geometry_functions() + conversion_functions() + weather_functions() +
           calendar_functions() + text_functions() + finance_functions() + physics_functions() + lists_functions() +
           lookup_functions())
    names = [f.name for f in fns]
    assert len(names) == len(set(names)), "duplicate function names"
    return fns


# ----------------------------------------------------------------------------------------
# Splits and tasks

SPLITS = ["train", "validation", "test"]


def assign_splits(fns):
    """Each domain's functions, shuffled, cut into test, validation and train (at least one each)."""
    rng = random.Random(SEED)
    for domain in sorted({f.domain for f in fns}):
        group = sorted((f for f in fns if f.domain == domain), key=lambda f: f.name)
        rng.shuffle(group)
        n_test = max(1, round(len(group) * SPLIT_SHARE["test"]))
        n_val = max(1, round(len(group) * SPLIT_SHARE["validation"]))
        for i, f in enumerate(group):
            f.split = "test" if i < n_test else "validation" if i < n_test + n_val else "train"


def sentence(text):
    text = text[0].upper() + text[1:]
    return text if text.rstrip("\"'\u201d")[-1] in ".?!" else text + "."


def request(fn, rng):
    """One request for one call: (text, expected call, whether it may start lowercase)."""
    text, fixed = rng.choice(fn.templates)
    vals, mentioned = fn.draw(rng, (text, fixed))
    return fn.render(text, vals, mentioned, rng), fn.expected(vals, mentioned), first_word_is_common(text)


def join(parts, rng):
    """Several requests, (text, may start lowercase), as one message."""
    texts = [sentence(t) for t, _ in parts]
    lower = [t[0].lower() + t[1:] if ok else t for t, (_, ok) in zip(texts, parts)]
    if len(texts) == 3:
        return rng.choice([" ".join(texts), "1. {}\n2. {}\n3. {}".format(*texts),
                           "Three questions. {} {} {}".format(*texts), "{}\n{}\n{}".format(*texts)])
    a, b = texts
    return rng.choice([f"{a} {b}", f"{a}\n{b}", f"{a} Also, {lower[1]}", f"Two things. First: {a} Second: {b}",
                       f"1. {a}\n2. {b}", f"{a} And then {lower[1]}" if parts[1][1] else f"{a} And then: {b}"])


def polish(text, rng):
    if rng.random() < 0.07:
        text = rng.choice(["Hi! ", "Hello. ", "Hey, quick question. ", "Good morning! "]) + text
    if rng.random() < 0.07 and text[-1] in ".?!":
        text += rng.choice([" Thanks!", " Thank you.", " Thanks in advance."])
    return text


def distractors(chosen, pool, rng, k):
    """k tools from `pool` that cannot serve the request: neither chosen nor alike a chosen one;
    a random share from the chosen functions' domains."""
    names = {f.name for f in chosen}
    alike = {f.alike for f in chosen if f.alike}
    domains = {f.domain for f in chosen}
    cands = [g for g in pool if g.name not in names and not (g.alike and g.alike in alike)]
    same = [g for g in cands if g.domain in domains]
    other = [g for g in cands if g.domain not in domains]
    rng.shuffle(same)
    rng.shuffle(other)
    n_same = min(len(same), rng.randrange(0, k + 1))
    return same[:n_same] + other[:k - n_same]


def distinct(calls):
    keys = [json.dumps(c, sort_keys=True) for c in calls]
    return len(set(keys)) == len(keys)


def make_task(kind, fn, pool, rng):
    """(message, tools, calls) of one task whose main function is `fn`."""
    if kind in ("simple", "multiple"):
        text, call, _ = request(fn, rng)
        extra = distractors([fn], pool, rng, rng.randrange(2, 5)) if kind == "multiple" else []
        return sentence(text), [fn] + extra, [call]
    if kind == "parallel":
        n = 3 if rng.random() < 0.25 else 2
        if fn.par_templates and n == 2 and rng.random() < 0.6:
            text, fixed = rng.choice(fn.par_templates)
            p = fn.by_name[fn.par_param]
            for _ in range(100):
                vals, mentioned = fn.draw(rng, (text, fixed))
                vals2 = dict(vals, **{p.name: p.sample_other(rng, vals[p.name])})
                calls = [fn.expected(vals, mentioned), fn.expected(vals2, mentioned)]
                if fn.valid(vals2) and distinct(calls):
                    message = sentence(fn.render(text, vals, mentioned, rng, vals2))
                    break
            else:
                raise AssertionError(f"{fn.name}: no second value for {text!r}")
        else:
            for _ in range(100):
                parts = [request(fn, rng) for _ in range(n)]
                calls = [c for _, c, _ in parts]
                if distinct(calls):
                    break
            message = join([(t, ok) for t, _, ok in parts], rng)
        extra = distractors([fn], pool, rng, rng.randrange(1, 3)) if rng.random() < 0.5 else []
        return message, [fn] + extra, calls
    # parallel-multiple: two different functions
    others = [g for g in pool if g.name != fn.name and not (g.alike and g.alike == fn.alike)]
    g = rng.choice(others)
    (t1, c1, ok1), (t2, c2, ok2) = request(fn, rng), request(g, rng)
    message = join([(t1, ok1), (t2, ok2)], rng)
    extra = distractors([fn, g], pool, rng, rng.randrange(0, 3))
    return message, [fn, g] + extra, [c1, c2]


def build_split(split, fns, rng):
    pool = [f for f in fns if f.split == split]
    size = SIZES[split]
    counts = [(kind, round(share * size)) for kind, share in KINDS]
    counts[0] = (counts[0][0], size - sum(n for _, n in counts[1:]))
    rows, seen = [], set()
    for kind, n in counts:
        order = []
        for _ in range(n):
            if not order:
                order = pool[:]
                rng.shuffle(order)
            fn = order.pop()
            for _ in range(50):
                message, tools, calls = make_task(kind, fn, pool, rng)
                message = polish(message, rng)
                if message not in seen:
                    break
            seen.add(message)
            rng.shuffle(tools)
            rows.append((fn.domain, kind, message, tools, calls))
    rng.shuffle(rows)
    out = []
    for i, (domain, kind, message, tools, calls) in enumerate(rows):
        assert all(f.split == split for f in tools)
        out.append({"id": f"{domain}.{kind}.{i + 1:04d}", "messages": [{"role": "user", "content": message}],
                    "tools": [f.definition() for f in tools], "calls": calls})
    return out


def build():
    """Every file's text, plus the tasks and functions for the self-check and the counts."""
    fns = catalogue()
    assign_splits(fns)
    tasks = {}
    for i, split in enumerate(SPLITS):
        tasks[split] = build_split(split, fns, random.Random(SEED + 1 + i))
    dump = lambda rows: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    files = {f"{split}.jsonl": dump(tasks[split]) for split in SPLITS}
    entries = [{"name": f.name, "domain": f.domain, "split": f.split, "definition": f.definition()}
               for f in sorted(fns, key=lambda f: (f.domain, f.name))]
    files["functions.json"] = "[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n]\n"
    return files, tasks, fns


# ----------------------------------------------------------------------------------------
# Counts for README.md (between the markers)

BEGIN = "<!-- counts: written by tools/make_function_tasks.py; do not edit by hand -->"
END = "<!-- /counts -->"


def counts_section(files, tasks, fns):
    domains = sorted({f.domain for f in fns})
    kinds = [k for k, _ in KINDS]
    lines = [BEGIN, "", "Functions per domain and split:", "",
             "| domain | train | validation | test | total |", "|---|---:|---:|---:|---:|"]
    for d in domains + ["total"]:
        row = [sum(1 for f in fns if (d == "total" or f.domain == d) and f.split == s) for s in SPLITS]
        lines.append(f"| {d} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    lines += ["", "Tasks per kind and split (tools offered per task: min-max, mean):", "",
              "| kind | train | validation | test | tools |", "|---|---:|---:|---:|---|"]
    for k in kinds + ["total"]:
        rows = [[t for t in tasks[s] if k == "total" or t["id"].split(".")[-2] == k] for s in SPLITS]
        n_tools = [len(t["tools"]) for r in rows for t in r]
        lines.append(f"| {k} | " + " | ".join(str(len(r)) for r in rows) +
                     f" | {min(n_tools)}-{max(n_tools)}, {sum(n_tools) / len(n_tools):.1f} |")
    lines += ["", "Tasks per domain of the main function, and expected calls:", "",
              "| domain | train | validation | test |", "|---|---:|---:|---:|"]
    for d in domains:
        lines.append(f"| {d} | " + " | ".join(
            str(sum(1 for t in tasks[s] if t["id"].startswith(d + "."))) for s in SPLITS) + " |")
    lines.append("| calls | " + " | ".join(str(sum(len(t["calls"]) for t in tasks[s])) for s in SPLITS) + " |")
    lines += ["", "| file | bytes |", "|---|---:|"]
    for name in [f"{s}.jsonl" for s in SPLITS] + ["functions.json"]:
        lines.append(f"| `{name}` | {len(files[name].encode('utf-8')):,} |")
    lines += ["", END]
    return "\n".join(lines)


def with_counts(readme, section):
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"Data/function-calls/README.md has no counts markers ({BEGIN} ... {END})")
    head, rest = readme.split(BEGIN, 1)
    return head + section + rest.split(END, 1)[1]


# ----------------------------------------------------------------------------------------
# Self-check with distill verify: right answers must pass, wrong ones must fail


def concrete(v):
    """A value the model could write for one acceptable value (nested possible answers resolved)."""
    if isinstance(v, dict):
        out = {}
        for k, options in v.items():
            given = [o for o in options if o != ""]
            if given:
                out[k] = concrete(given[0])
        return out
    if isinstance(v, list):
        return [concrete(x) for x in v]
    return v


def arguments(call, pick="first", optional=False):
    """Arguments of one expected call: `pick` first or last acceptable value; optional ones too when asked."""
    (name, args), = call.items()
    out = {}
    for arg, acc in args.items():
        given = [a for a in acc if a != ""]
        if "" in acc and not optional or not given:
            continue
        out[arg] = concrete(given[0] if pick == "first" else given[-1])
    return name, out


def json_answer(calls):
    return json.dumps([{"name": n, "arguments": a} for n, a in calls], ensure_ascii=False)


def py_value(v):
    if isinstance(v, bool):
        return "True" if v else "False"
    if v is None:
        return "None"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(py_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {py_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def py_answer(calls):
    text = [f"{n}(" + ", ".join(f"{k}={py_value(v)}" for k, v in a.items()) + ")" for n, a in calls]
    return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


def answers(task, fns_by_name, rng):
    """(label, completion, expected verdict) for one task."""
    calls = [arguments(c) for c in task["calls"]]
    out = [("right: JSON, required arguments", json_answer(calls), True),
           ("right: JSON, every argument", json_answer([arguments(c, optional=True) for c in task["calls"]]), True),
           ("right: JSON, last acceptable values", json_answer([arguments(c, "last") for c in task["calls"]]), True),
           ("right: Python call syntax", py_answer([arguments(c, optional=True) for c in task["calls"]]), True),
           ("right: OpenAI tool_calls", json.dumps({"tool_calls": [
               {"type": "function", "function": {"name": n, "arguments": json.dumps(a)}} for n, a in calls]}), True),
           ("right: <tool_call> tags after prose", "Sure, let me look that up.\n" + "\n".join(
               f"<tool_call>\n{json.dumps({'name': n, 'arguments': a}, ensure_ascii=False)}\n</tool_call>"
               for n, a in calls), True)]
    if len(calls) > 1:
        out.append(("right: parallel calls reversed", json_answer(calls[::-1]), True))
        out.append(("wrong: a call missing", json_answer(calls[:-1]), False))
        out.append(("wrong: first call twice", json_answer([calls[0]] + [calls[0]] * (len(calls) - 1)), False))
    name, args = calls[0]
    fn = fns_by_name[name]
    offered = [t["name"] for t in task["tools"] if t["name"] not in {n for n, _ in calls}]
    other = rng.choice(offered) if offered else name + "_v2"
    out.append(("wrong: another function" if offered else "wrong: unknown function",
                json_answer([(other, args)] + calls[1:]), False))
    required = [p for p in fn.params if p.required]
    p = rng.choice(required)
    out.append(("wrong: required argument missing",
                json_answer([(name, {k: v for k, v in args.items() if k != p.name})] + calls[1:]), False))
    out.append(("wrong: wrong value",
                json_answer([(name, dict(args, **{p.name: p.wrong(args[p.name], rng)}))] + calls[1:]),
                False))
    out.append(("wrong: wrong type", json_answer([(name, dict(args, **{p.name: p.mistype(args[p.name])}))] + calls[1:]),
                False))
    out.append(("wrong: unexpected argument", json_answer([(name, dict(args, verbose=True))] + calls[1:]), False))
    unmentioned = [q for q in fn.params if not q.required and task["calls"][0][name][q.name][-1] == ""
                   and q.default is not NODEFAULT and len(task["calls"][0][name][q.name]) > 1]
    if unmentioned:
        q = rng.choice(unmentioned)
        value = q.sample_other(rng, q.default)
        while isinstance(value, str) and standardize(value) == standardize(q.default):
            value = q.sample_other(rng, q.default)  # the verifier compares strings standardized
        out.append(("wrong: optional argument not asked for, not its default",
                    json_answer([(name, dict(args, **{q.name: value}))] + calls[1:]), False))
    return out


def self_check(distill, tasks, fns):
    fns_by_name = {f.name: f for f in fns}
    rng = random.Random(SEED + 99)
    failures, tally = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for split in SPLITS:
            tasks_path, outputs_path = os.path.join(tmp, f"{split}.jsonl"), os.path.join(tmp, f"{split}.out.jsonl")
            with open(tasks_path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks[split])
            expected = []
            with open(outputs_path, "w", encoding="utf-8") as f:
                for t in tasks[split]:
                    for label, completion, ok in answers(t, fns_by_name, rng):
                        f.write(json.dumps({"id": t["id"], "completion": completion}, ensure_ascii=False) + "\n")
                        expected.append((t["id"], label, completion, ok))
            run = subprocess.run([distill, "verify", "--tasks", tasks_path, "--outputs", outputs_path, "--json"],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"distill verify exited {run.returncode} on {split}:\n{run.stderr[-2000:]}")
            report = json.loads(run.stdout)
            assert len(report["rows"]) == len(expected), (len(report["rows"]), len(expected))
            for row in report["rows"]:
                task_id, label, completion, ok = expected[row["line"] - 1]
                assert row["id"] == task_id
                n, agree = tally.get((label, split), (0, 0))
                tally[(label, split)] = (n + 1, agree + (row["correct"] == ok))
                if row["correct"] != ok:
                    verdict = "correct" if row["correct"] else "incorrect"
                    failures.append(f"{split} {task_id} [{label}] judged {verdict}: {row['reason']}\n"
                                    f"    {completion[:300]}")
    labels = sorted({label for label, _ in tally}, key=lambda l: (not l.startswith("right"), l))
    print("| answer | expected | " + " | ".join(SPLITS) + " |")
    print("|---|---|" + "---:|" * len(SPLITS))
    for label in labels:
        cells = []
        for split in SPLITS:
            n, agree = tally.get((label, split), (0, 0))
            cells.append(f"{agree}/{n}" if n else "-")
        kind, _, what = label.partition(": ")
        print(f"| {what} | {'correct' if kind == 'right' else 'incorrect'} | " + " | ".join(cells) + " |")
    total = sum(n for n, _ in tally.values())
    print(f"\n{total - len(failures)} of {total} verdicts as expected")
    for line in failures[:20]:
        print(line)
    return not failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    ap.add_argument("--verify-with", metavar="DISTILL",
                    help="score right and wrong answers with DISTILL verify (e.g. .build/debug/distill)")
    args = ap.parse_args()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Data", "function-calls")
    files, tasks, fns = build()
    readme_path = os.path.join(out, "README.md")
    readme = open(readme_path, encoding="utf-8").read() if os.path.exists(readme_path) else f"{BEGIN}\n{END}\n"
    files["README.md"] = with_counts(readme, counts_section(files, tasks, fns))
    if args.verify_with:
        sys.exit(0 if self_check(args.verify_with, tasks, fns) else 1)
    if args.check:
        bad = []
        for name, text in files.items():
            path = os.path.join(out, name)
            if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
                bad.append(name)
        if bad:
            print("differs: " + ", ".join(bad), file=sys.stderr)
            sys.exit(1)
        print("Data/function-calls matches tools/make_function_tasks.py")
        return
    os.makedirs(out, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    print(f"wrote {', '.join(files)} to Data/function-calls")


if __name__ == "__main__":
    main()
