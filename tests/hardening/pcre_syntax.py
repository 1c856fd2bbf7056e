"""Hypothesis strategies for PCRE2 patterns: every construct of PCRE2 10.42's syntax that
touched pcre4pl's unknown-error abort or the engine's limits, mixed with ordinary ones.

Recursion and subroutine calls (the source of PCRE2_ERROR_RECURSELOOP), backreferences,
callouts, backtracking verbs, \\C, UTF escapes (valid, surrogate, out of range), \\X,
lookbehinds, conditionals, pattern-start options including (*LIMIT_...), nested and
counted quantifiers, broken syntax, and very long patterns.
"""

from __future__ import annotations

from hypothesis import strategies as st

LITERALS = ["a", "b", "x", "ab", "aa", ",", "é", "😀", "\\n", "\\.", "\\\\", "-", " ", "0",
            "\\x{1F600}", "\\x41", "\\o{101}", "\\101", "\\N{U+41}", "\\cA", "\\e", "\\t",
            "\\0", "\\x{d800}", "\\x{110000}", "\\x{10ffff}", "'", "\\'", "\n", "#"]
CLASSES = [".", "\\w", "\\W", "\\d", "\\s", "\\h", "\\v", "\\R", "\\X", "\\C", "\\N",
           "\\p{L}", "\\P{Lu}", "\\p{Greek}", "[a-z]", "[^x]", "[[:alpha:]]", "[]a]", "[^]]",
           "[\\d-z]", "[é😀]", "[\\Qa]\\E]", "[(?R)]", "\\p{Xan}"]
ANCHORS = ["^", "$", "\\A", "\\z", "\\Z", "\\b", "\\B", "\\G", "\\K"]
CALLS = ["(?R)", "(?0)", "(?1)", "(?-1)", "(?+1)", "(?&n)", "(?P>n)", "\\g<1>", "\\g'n'",
         "\\g<-1>", "\\g<n>", "\\g<+1>"]
BACKREFS = ["\\1", "\\2", "\\g{-1}", "\\g1", "\\g{1}", "\\k<n>", "\\k'n'", "\\k{n}",
            "(?P=n)"]
VERBS = ["(*ACCEPT)", "(*FAIL)", "(*F)", "(*COMMIT)", "(*PRUNE)", "(*SKIP)", "(*THEN)",
         "(*MARK:m)", "(*:m)", "(*SKIP:m)", "(*PRUNE:m)", "(*THEN:m)", "(*commit)",
         "(*ACCEPT:m)"]
CALLOUTS = ["(?C)", "(?C1)", "(?C255)", '(?C"x")', "(?C{y})"]
OPTIONS = ["(?i)", "(?x)", "(?xx)", "(?s)", "(?m)", "(?n)", "(?U)", "(?J)", "(?-i)", "(?^)",
           "(?x)#c\n", "(?x) a b "]
MISC = ["\\Qa.b\\E", "\\Q(?R)", "(?#c)", "(?#(?R))", "\\E", "(", ")", "[", "]", "{", "}",
        "\\", "|", "\\c", "\\x{", "(?", "(*", "(?<", "(?P", "{2,", "a{2,3"]
START = ["(*UTF)", "(*UCP)", "(*CRLF)", "(*ANY)", "(*NUL)", "(*NO_START_OPT)",
         "(*NO_AUTO_POSSESS)", "(*NO_DOTSTAR_ANCHOR)", "(*NO_JIT)", "(*BSR_ANYCRLF)",
         "(*LIMIT_MATCH=5)", "(*LIMIT_DEPTH=3)", "(*LIMIT_HEAP=0)", "(*LIMIT_RECURSION=1)",
         "(*NOTEMPTY)", "(*NOTEMPTY_ATSTART)", "(*limit_match=1)", "(*UTF8)"]
QUANTIFIERS = ["*", "+", "?", "*?", "+?", "??", "*+", "++", "?+", "{2}", "{0,3}", "{2,}",
               "{1,2}?", "{3}+", "{0,65535}", "{300}", "{1000}", "{,3}"]
OPENERS = ["(", "(?:", "(?<n>", "(?'n'", "(?P<n>", "(?>", "(?|", "(?=", "(?!", "(?<=",
           "(?<!", "(*pla:", "(*atomic:", "(*nla:", "(?i:", "(?(1)", "(?(R)", "(?(R1)",
           "(?(<n>)", "(?(DEFINE)", "(?(?=a)", "(*sr:", "(?(n)", "(?(R&n)"]

atoms = st.sampled_from(LITERALS + CLASSES + ANCHORS + CALLS + BACKREFS + VERBS + CALLOUTS
                        + OPTIONS + MISC)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(QUANTIFIERS)).map("".join),
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        st.tuples(st.sampled_from(OPENERS), inner).map(lambda t: t[0] + t[1] + ")"),
    )


bodies = st.recursive(atoms, _extend, max_leaves=12)

patterns = st.one_of(
    st.tuples(st.lists(st.sampled_from(START), max_size=2).map("".join), bodies).map("".join),
    # very long patterns: a body repeated up to past the length limit
    st.tuples(bodies, st.integers(20, 400)).map(lambda t: t[0] * t[1]),
    # a leading .* or .+, which the engine searches from line starts only
    st.tuples(st.sampled_from(["", "(*CRLF)", "(*ANY)", "(*CR)", "(*ANYCRLF)", "(*NUL)"]),
              st.sampled_from([".*", ".+", ".*?", ".+?", ".*+", ".++"]),
              bodies).map("".join),
    # nested quantifiers, the classic catastrophic shapes
    st.tuples(st.sampled_from(["(a+)+", "(a|aa)*", "(\\w+\\s?)*", "(.*?,){11}", "(a*)*",
                               "\\w*?[^x]", "(?:a?){20}", "(x+x+)+"]),
              st.sampled_from(["", "$", "b", "[bc]", "\\1", "(?=a*+)"])).map("".join),
)

# Short texts for comparing the engine's search with PCRE2's own unanchored search.
short_texts = st.text(alphabet="abx ,\né😀-_.0\r", max_size=24)
