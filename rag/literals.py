"""Facts a term analyzer cannot see, compared with the passages character for character.

The answer check (rag/grounding.py) compares stemmed words and Chinese bigrams, which
drop what matters most in an answer about software: operators, paths, options, dotted
names and SQL keywords ("//", "\\i", "~/.bashrc", "auth.notice", "DISTINCT"). "The //
operator divides two integers" adds no term to its question, and "the DISTINCT keyword
in your SQL query" is mostly filler words, yet both state a fact a passage holds
literally. Such tokens are found here and looked up in the passages as whole tokens:
"//" inside "http://x" does not count.
"""

import re

# Characters a literal is made of: ASCII word characters and the symbols of paths,
# options, operators and dotted names.
_BODY = r"[\w./~\\+*=<>|&%$#@^:-]"
LITERAL = re.compile(f"{_BODY}+", re.ASCII)
_EDGE = ".:*"  # sentence punctuation and markdown emphasis around a literal
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
_INNER_BODY = r"[\w/~\\+*=<>|&%$#@^-]"  # a literal ending in "." or ":" ends a sentence
_INLINE_CODE = re.compile(r"`([^`\n]+)`")


def literal_facts(sentence: str, question: str) -> set[str]:
    """The sentence's literals the question does not already hold.

    A literal is a token with a symbol in it ("//", "basics.sql", "--purge") or an
    all-capitals word (an SQL keyword, an environment variable); a lone symbol ("-" of
    a list) and plain words are the analyzer's business, except in inline code
    ("`dquilt`"), where every token is one.
    """
    asked = question.lower()
    code = {token for span in _INLINE_CODE.findall(sentence) for token in _tokens(span)}
    return {
        token
        for token in _tokens(sentence)
        if (token in code or _is_literal(token)) and len(token) > 1 and token.lower() not in asked
    }


def _tokens(text: str) -> list[str]:
    return [match.group().strip(_EDGE) for match in LITERAL.finditer(text)]


def holds(passage: str, literal: str) -> bool:
    """Whether `literal` stands in `passage` as a token of its own (any case)."""
    pattern = rf"(?<!{_BODY}){re.escape(literal)}(?!{_INNER_BODY})(?![.:]{_BODY})"
    return re.search(pattern, passage, re.IGNORECASE | re.ASCII) is not None


def _is_literal(token: str) -> bool:
    if _NOT_ALNUM.search(token):
        return True
    return token.isalpha() and token.isupper()
