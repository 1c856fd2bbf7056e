/*  Test oracle for the regex fuzz (tests/hardening/regex_child.py): the engine's
    search, and PCRE2's own unanchored search of the same pattern, on one text.
*/

:- module(regex_oracle, [oracle/4]).
:- use_module(library(pcre)).
:- use_module('../../prolog/match').

%!  oracle(+Pattern, +Text, -Ours, -Plain) is det.
%
%   Ours: what the engine's regex_compile/2 + regex_match/3 say (true, false, refused
%   or limit). Plain: what the pattern compiled as it is says under a per-start match
%   limit (true, false, limit or skipped when Ours was refused: only patterns the
%   engine accepts are safe to give to pcre4pl directly).

oracle(Pattern, Text, Ours, Plain) :-
    (   catch(regex_compile(Pattern, Rx), error(octopus_error(query, _), _), fail)
    ->  catch(( regex_match(Rx, Text, name) -> Ours = true ; Ours = false ),
              error(resource_error(_), _), Ours = limit),
        atom_concat('(*LIMIT_MATCH=100000)', Pattern, Limited),
        re_compile(Limited, Re, [never_backslash_c(true)]),
        catch(( re_match(Re, Text) -> Plain = true ; Plain = false ),
              error(resource_error(_), _), Plain = limit)
    ;   Ours = refused,
        Plain = skipped
    ).
