:- module(octopus_regex,
          [ regex_compile/2,          % +Pattern, -Regex
            regex_compile/3,          % +Kind, +Pattern, -Regex
            regex_match/3,            % +Regex, +Text, +Where
            regex_limit/2,            % ?Limit, ?Value
            with_regex_budget/1,      % :Goal
            probe_regex/1             % +Regex
          ]).

/** <module> Regular expressions for Octopus queries, bounded

Regular expressions are PCRE2 searches (not full matches) through library(pcre).
What this module guarantees about them, and why (the limits are in regex_limit/2 and
docs/decisions.md):

  1. No pattern can end the process. pcre4pl's re_error() (pcre4pl.c, SWI-Prolog 9.2)
     knows only a few pcre2_match() results (no match, match limit, no memory and
     impossible ones) and fails an assertion on every other code; SWI-Prolog builds
     keep assertions (even Release), so that is an abort. The codes a search can
     still produce are kept unreachable: RECURSELOOP (-52) only comes from recursion
     and subroutine calls, which are refused; DEPTHLIMIT (-53) cannot happen because
     the depth never exceeds the number of match steps and the match limit is kept
     at or below PCRE2's depth limit; HEAPLIMIT (-63) cannot happen because the heap
     is at most depth x frame size, and the frame size is bounded by the limit on
     capturing groups; patterns may not set limits of their own ((*LIMIT_...)).
     Partial matching, JIT, DFA and start offsets are never used, and subjects are
     Prolog text, hence valid UTF-8. \C is refused at compile time.
  2. The work of one search is bounded. PCRE2's match limit counts steps per start
     position, so an unanchored search may cost the subject length times the limit
     (a quadratic scan). A search therefore first runs the pattern as written with a
     tiny limit per start position (which settles most patterns at PCRE2's own
     speed, and costs at most that limit per character), and otherwise runs it as
     the single anchored search \A(?s:.*?)(?:P), whose lazy prefix tries the start
     positions itself, so the match limit bounds the whole search. Together with the
     subject length and the compiled pattern size limits, this bounds the CPU of one
     search (measured in bench/regex_limits.py). Backtracking verbs that act on start
     positions ((*COMMIT) (*PRUNE) (*SKIP) (*THEN)) and (*NOTEMPTY...) would mean
     something else under that wrapper and are refused.
  3. The work of one query is bounded: inside with_regex_budget/1, a query that has
     used more CPU than a base plus an allowance per text matched stops with a
     query error.
  4. Trigger and subscription regexes run on every write: they get a smaller match
     limit, and prepare_trigger_query/3 refuses, at install time, those that exceed
     it on probe texts.
*/

:- use_module(library(pcre)).
:- use_module(library(error)).
:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module(errors).

:- meta_predicate with_regex_budget(0).

                 /*******************************
                 *      REGULAR EXPRESSIONS     *
                 *******************************/

%!  regex_limit(?Limit, ?Value) is nondet.
%
%   The limits every regular expression lives under (docs/decisions.md, Language):
%
%     - pattern_length: characters in a pattern;
%     - capture_groups: capturing groups in a pattern (each one widens every
%       backtracking frame by 16 bytes, so this bounds a search's heap);
%     - compiled_copies: a pattern must compile 32 times over within PCRE2's 64 KiB
%       program limit, i.e. to at most ~2 KiB (a step may walk the whole program,
%       and X{1000} repeats X's program 1000 times);
%     - subject_length: characters of the text a regex runs against;
%     - match_steps, trigger_match_steps: PCRE2 match steps (backtracking frames)
%       for a whole search, in a query and in a trigger or subscription;
%     - quick_steps: the steps per start position of the first, unanchored try;
%     - name_length: characters in a record name;
%     - query_cpu_base, query_cpu_per_text: a query that runs regexes stops once its
%       CPU time exceeds base + per_text * (texts matched so far), in seconds (Prolog
%       flags octopus_regex_cpu_base and octopus_regex_cpu_per_text).

regex_limit(pattern_length, 1000).
regex_limit(capture_groups, 64).
regex_limit(compiled_copies, 32).
regex_limit(subject_length, Max) :-
    subject_length_limit(Max).
regex_limit(match_steps, Steps) :-
    effective_match_steps(query, Steps).
regex_limit(trigger_match_steps, Steps) :-
    effective_match_steps(trigger, Steps).
regex_limit(quick_steps, 16).
regex_limit(name_length, 1024).
regex_limit(query_cpu_base, Seconds) :-
    current_prolog_flag(octopus_regex_cpu_base, Seconds).
regex_limit(query_cpu_per_text, Seconds) :-
    current_prolog_flag(octopus_regex_cpu_per_text, Seconds).

:- create_prolog_flag(octopus_regex_cpu_base, 1.0, [type(float), keep(true)]).
:- create_prolog_flag(octopus_regex_cpu_per_text, 0.0001, [type(float), keep(true)]).

subject_length_limit(1024).

wanted_match_steps(query, 20000).
wanted_match_steps(trigger, 5000).

%   The match limits actually used: the wanted ones unless this PCRE2 was built with a
%   depth limit, match limit or heap limit that could be reached first (a reached
%   depth or heap limit is an error code pcre4pl does not handle). Defaults are 10M
%   steps, 10M depth and 20 GB of heap; a frame is under 256 bytes plus 16 per group.

:- dynamic effective_match_steps/2.

set_effective_match_steps :-
    retractall(effective_match_steps(_, _)),
    forall(wanted_match_steps(Kind, Wanted),
           ( effective_steps(Wanted, Steps),
             assertz(effective_match_steps(Kind, Steps)) )).

effective_steps(Wanted, Steps) :-
    regex_limit(capture_groups, Groups),
    pcre_config(matchlimit, Wanted, MatchLimit),
    pcre_config(depthlimit, Wanted, DepthLimit),
    pcre_config(heaplimit, 20000000, HeapKiB),
    FrameBytes is 256 + 16 * (Groups + 1),
    HeapSteps is (HeapKiB * 1024 - 1048576) // FrameBytes,
    Steps is max(100, min(Wanted, min(MatchLimit, min(DepthLimit, HeapSteps)))).

pcre_config(Key, Default, Value) :-
    Term =.. [Key, Value0],
    (   catch(re_config(Term), _, fail), integer(Value0)
    ->  Value = Value0
    ;   Value = Default
    ).

:- initialization(set_effective_match_steps, now).

%!  regex_compile(+Pattern, -Regex) is det.
%!  regex_compile(+Kind, +Pattern, -Regex) is det.
%
%   Validate and compile Pattern (atom or string) into Regex for a `query` (the
%   default) or a `trigger` (which includes subscriptions), caching the result.
%   Regex is `rx(Source, Steps, Quick, Bounded)`: Steps is the match limit of Kind,
%   Quick the pattern as written under a
%   match limit of quick_steps per start position (PCRE2's own unanchored search, with
%   all its start-of-match optimisations), Bounded the anchored whole-search form
%   under the match limit of Kind; regex_match/3 tries Quick first. Raises
%   octopus_error(query, Message) for bad syntax and for every pattern the limits refuse
%   (see the module comment). The cache is bounded (oldest entries go first);
%   library(pcre)'s own cache is not used because it never shrinks.

:- dynamic regex_cached/3, regex_probed/1.

regex_cache_limit(1024).

regex_compile(Pattern, Rx) :-
    regex_compile(query, Pattern, Rx).

regex_compile(Kind, Pattern, Rx) :-
    regex_key(Pattern, Key),
    (   regex_cached(Key, Kind, Rx0)
    ->  Rx = Rx0
    ;   compile_regex(Kind, Key, Rx),
        remember_regex(Key, Kind, Rx)
    ).

regex_key(Pattern, Key) :-
    (   atom(Pattern) -> Key = Pattern
    ;   string(Pattern) -> atom_string(Key, Pattern)
    ;   type_error(regex_pattern, Pattern)
    ).

compile_options([never_backslash_c(true), utf_check(true)]).

compile_regex(Kind, Key, rx(Source, Steps, Quick, Re)) :-
    atom_string(Key, Source),
    check_pattern(Source),
    compile_options(Options),
    catch(re_compile(Source, _, Options), error(E, _), bad_regex(Source, E)),
    split_start_options(Source, Start, Body),
    regex_limit(quick_steps, QuickSteps),
    format(string(Plain), "~s(*LIMIT_MATCH=~d)~s", [Start, QuickSteps, Body]),
    re_compile(Plain, Quick, Options),
    kind_steps(Kind, Steps),
    (   line_start_prefix(Body)
    ->  LineStart = "(?<!.)"
    ;   LineStart = ""
    ),
    format(string(Wrapped), "~s(*LIMIT_MATCH=~d)\\A(?s:.*?)~s(?:~s)",
           [Start, Steps, LineStart, Body]),
    (   catch(re_compile(Wrapped, Re, Options), error(_, _), fail)
    ->  true
    ;   regex_error(Source, "it must not end inside \\Q... or a # comment (end the \c
                             comment with a newline)")
    ),
    regex_limit(compiled_copies, Copies),
    format(string(Repeated), "~s(?:~s){~d}", [Start, Body, Copies]),
    (   catch(re_compile(Repeated, _, Options), error(_, _), fail)
    ->  true
    ;   regex_error(Source, "it is too large once compiled (a repeated group such as \c
                             (...){1000} is compiled once per repetition)")
    ).

kind_steps(query, Steps) :- regex_limit(match_steps, Steps).
kind_steps(trigger, Steps) :- regex_limit(trigger_match_steps, Steps).

%   A leading .* or .+ (no alternative anywhere) can only match from where a `.`
%   cannot extend backwards, so the search need only try those start positions, as
%   PCRE2 itself does for unanchored patterns; without this, the lazy prefix would
%   make the common r'.*x' quadratic.
line_start_prefix(Body) :-
    (   sub_string(Body, 0, _, _, ".*")
    ;   sub_string(Body, 0, _, _, ".+")
    ), !,
    \+ sub_string(Body, _, _, _, "|").

bad_regex(S, syntax_error(Why)) :- !,
    regex_error(S, Why).
bad_regex(S, existence_error(re_type_flag, Flag)) :- !,
    format(string(Why), "a capture group name may not end in _~w", [Flag]),
    regex_error(S, Why).
bad_regex(S, E) :-
    format(string(Why), "~q", [E]),
    regex_error(S, Why).

regex_error(Source, Why) :-
    octopus_error(query, "invalid regular expression r'~s': ~w", [Source, Why]).

%   check_pattern(+Source) is det.
%
%   The refusals that need no compiling. The scan is deliberately coarse: a
%   backslash always takes the next character with it, and character classes,
%   \Q...\E and comments are read like the rest, so a refused construct inside them
%   is refused too (never the other way round: wherever PCRE2 reads a construct, this
%   scan sees the same characters).

check_pattern(Source) :-
    string_length(Source, Length),
    regex_limit(pattern_length, MaxLength),
    (   Length > MaxLength
    ->  format(string(Why), "it has ~D characters, more than the ~D allowed",
               [Length, MaxLength]),
        regex_error(Source, Why)
    ;   true
    ),
    (   sub_string(Source, _, _, _, "\u0000")
    ->  regex_error(Source, "it contains the NUL character (write \\x00 to match it)")
    ;   true
    ),
    string_codes(Source, Codes),
    scan_pattern(Codes, Source, 0, Groups),
    regex_limit(capture_groups, MaxGroups),
    (   Groups > MaxGroups
    ->  format(string(Why), "it has more than ~D capturing groups (group with (?:...) \c
                             when nothing refers to the group)", [MaxGroups]),
        regex_error(Source, Why)
    ;   true
    ).

scan_pattern([], _, G, G).
scan_pattern([0'\\, C|T], S, G0, G) :- !,
    (   C == 0'g,
        skip_blanks(T, [D|_]),
        (   D == 0'< ; D == 0'\' )
    ->  refuse_call(S)
    ;   scan_pattern(T, S, G0, G)
    ).
scan_pattern([0'(, 0'?|T], S, G0, G) :- !,
    group_kind(T, S, Capturing),
    G1 is G0 + Capturing,
    scan_pattern(T, S, G1, G).
scan_pattern([0'(, 0'*|T], S, G0, G) :- !,
    check_verb(T, S),
    scan_pattern(T, S, G0, G).
scan_pattern([0'(|T], S, G0, G) :- !,
    G1 is G0 + 1,
    scan_pattern(T, S, G1, G).
scan_pattern([_|T], S, G0, G) :-
    scan_pattern(T, S, G0, G).

skip_blanks([C|T], Rest) :-
    code_type(C, space), !,
    skip_blanks(T, Rest).
skip_blanks(Codes, Codes).

%   group_kind(+AfterParenQuestion, +Source, -Capturing): 1 for a named group, 0 for
%   other (?...) constructs; refuses recursion and subroutine calls ((?R), (?1),
%   (?+1), (?-1), (?&name), (?P>name)), the only source of PCRE2_ERROR_RECURSELOOP.
group_kind([C|_], S, _) :-
    (   C == 0'R ; C == 0'& ; C == 0'+ ; code_type(C, digit) ), !,
    refuse_call(S).
group_kind([0'-, C|_], S, _) :-
    code_type(C, digit), !,
    refuse_call(S).
group_kind([0'P, 0'>|_], S, _) :- !,
    refuse_call(S).
group_kind([0'P, 0'<|_], _, 1) :- !.
group_kind([0'<, C|_], _, Capturing) :- !,
    (   ( C == 0'= ; C == 0'! ) -> Capturing = 0 ; Capturing = 1 ).
group_kind([0'\'|_], _, 1) :- !.
group_kind(_, _, 0).

refuse_call(S) :-
    regex_error(S, "recursion and subroutine calls ((?R), (?1), (?-1), (?&name), \c
                    (?P>name), \\g<name>) are not supported").

%   check_verb(+AfterParenStar, +Source): refuse the verbs that would set limits
%   (and could lift ours, or hit a depth or heap limit pcre4pl cannot report), and
%   those whose meaning depends on start positions, which the anchored search
%   wrapper changes. Verb names are case-sensitive in PCRE2; comparing upper-cased
%   refuses more, never less.
check_verb(T, S) :-
    verb_name(T, NameCodes),
    string_codes(Name0, NameCodes),
    string_upper(Name0, Name),
    (   sub_string(Name, 0, _, _, "LIMIT_")
    ->  regex_error(S, "a regular expression may not set its own match limits \c
                        ((*LIMIT_...))")
    ;   memberchk(Name, ["COMMIT", "PRUNE", "SKIP", "THEN", "NOTEMPTY",
                         "NOTEMPTY_ATSTART"])
    ->  format(string(Why), "the verb (*~s) is not supported", [Name]),
        regex_error(S, Why)
    ;   true
    ).

verb_name([C|T], [C|Name]) :-
    (   code_type(C, csym) -> true ; C == 0'= ), !,
    verb_name(T, Name).
verb_name(_, []).

%   split_start_options(+Source, -Start, -Body): Start is the leading run of
%   pattern-start options ((*UTF), (*CRLF), ...), which must stay at the very start
%   of the wrapped pattern; Body is the rest.
split_start_options(Source, Start, Body) :-
    string_codes(Source, Codes),
    start_options(Codes, StartCodes, BodyCodes),
    string_codes(Start, StartCodes),
    string_codes(Body, BodyCodes).

start_options(Codes, Start, Body) :-
    Codes = [0'(, 0'*|T],
    append(NameCodes, [0')|Rest], T),
    \+ memberchk(0'), NameCodes), !,
    atom_codes(Name, NameCodes),
    (   start_option(Name)
    ->  append([0'(, 0'*|NameCodes], [0')], Option),
        start_options(Rest, Start1, Body),
        append(Option, Start1, Start)
    ;   Start = [],
        Body = Codes
    ).
start_options(Codes, [], Codes).

start_option(Name) :-
    memberchk(Name, ['UTF', 'UCP', 'CR', 'LF', 'CRLF', 'ANYCRLF', 'ANY', 'NUL',
                     'BSR_ANYCRLF', 'BSR_UNICODE', 'NO_AUTO_POSSESS',
                     'NO_DOTSTAR_ANCHOR', 'NO_JIT', 'NO_START_OPT']).

remember_regex(Key, Kind, Rx) :-
    flag(octopus_regex_cache_size, N, N+1),
    regex_cache_limit(Limit),
    (   N >= Limit,
        retract(regex_cached(Old, _, _))
    ->  flag(octopus_regex_cache_size, M, M-1),
        retractall(regex_probed(Old))
    ;   true
    ),
    assertz(regex_cached(Key, Kind, Rx)).

%!  regex_match(+Regex, +Text, +Where) is semidet.
%
%   True if Regex (from regex_compile/2) finds a match in Text (atom or string).
%   Where (`name` or `key(Key)`) only serves error messages. Raises
%   error(resource_error(regex_subject_length), regex(Source, Where, Length, Limit))
%   when Text is longer than the subject limit and error(resource_error(match_limit),
%   regex(Source, Where, Length, Limit)) when the search needs more steps than the
%   match limit; both are resource errors, which trigger matching counts as no match.
%   Inside with_regex_budget/1, charges the query's budget.

regex_match(rx(Source, Steps, Quick, Bounded), Text, Where) :-
    atom_length(Text, Length),
    subject_length_limit(Max),
    (   Length =< Max
    ->  true
    ;   throw(error(resource_error(regex_subject_length),
                    regex(Source, Where, Length, Max)))
    ),
    catch(( pcre_match(Quick, Text) -> Found = true ; Found = false ),
          error(resource_error(match_limit), _),
          Found = unknown),
    (   Found == unknown
    ->  (   catch(pcre_match(Bounded, Text), error(resource_error(match_limit), _),
                  throw(error(resource_error(match_limit),
                              regex(Source, Where, Length, Steps))))
        ->  charge_budget(Source)
        ;   charge_budget(Source),
            fail
        )
    ;   charge_budget(Source),
        Found == true
    ).

%   search(+Quick, +Bounded, +Text) is semidet.
%
%   What regex_match/3 does, without the checks and the context of errors. Most
%   patterns settle within a few steps per start position, and PCRE2's start
%   optimisations skip most positions: Quick answers them at PCRE2's own speed. Quick
%   stops at the first start position that needs more steps (its cost is at most
%   quick_steps per character, within the match limit for the longest text), and the
%   bounded whole-search form answers instead. Both forms mean the same.
search(Quick, Bounded, Text) :-
    catch(( pcre_match(Quick, Text) -> Found = true ; Found = false ),
          error(resource_error(match_limit), _),
          Found = unknown),
    (   Found == unknown
    ->  pcre_match(Bounded, Text)
    ;   Found == true
    ).

%   pcre_match(+Regex, +Text) is semidet.
%
%   re_match/2 for a compiled Regex, without library(pcre)'s option handling (which
%   costs a microsecond, more than a typical search): its foreign predicate when this
%   version has it.
:- if(catch(current_predicate(pcre:re_match_/3), _, fail)).
pcre_match(Regex, Text) :-
    pcre:re_match_(Regex, Text, []).
:- else.
pcre_match(Regex, Text) :-
    re_match(Regex, Text).
:- endif.

%!  with_regex_budget(:Goal) is semidet.
%
%   Run Goal once, charging every regex search it makes to one budget: once the CPU
%   time used since the start exceeds query_cpu_base + query_cpu_per_text * Texts
%   (Texts: the texts searched so far), a search within the next 8 raises
%   octopus_error(query, Message). The allowance per text keeps big stores searchable (a store of a
%   million names takes a few seconds, which is its size, not a pattern's doing);
%   the base stops a pattern that is slow on every text within about a second.

with_regex_budget(Goal) :-
    nb_current('$octopus_regex_budget', budget(_, _, _, _)), !,
    once(Goal).
with_regex_budget(Goal) :-
    regex_limit(query_cpu_base, Base),
    regex_limit(query_cpu_per_text, PerText),
    statistics(cputime, T0),
    setup_call_cleanup(
        nb_setval('$octopus_regex_budget', budget(T0, 0, Base, PerText)),
        once(Goal),
        nb_delete('$octopus_regex_budget')).

%   The clock is read every 8th text (reading it costs about as much as a short
%   search); a query may overrun its budget by at most 8 searches.
charge_budget(Source) :-
    (   nb_current('$octopus_regex_budget', Budget)
    ->  arg(2, Budget, N0),
        N is N0 + 1,
        nb_setarg(2, Budget, N),
        (   N /\ 7 =:= 0
        ->  check_budget(Budget, N, Source)
        ;   true
        )
    ;   true
    ).

check_budget(budget(T0, _, Base, PerText), N, Source) :-
    statistics(cputime, T),
    (   T - T0 =< Base + PerText * N
    ->  true
    ;   format(string(Msg),
               "the query was stopped after ~3f s of CPU time spent mostly in regular \c
                expressions (r'~s' and others ran on ~D texts; the limit is ~w s plus \c
                ~w s per text); narrow the query (an exact name, a key: value \c
                constraint) or simplify the pattern",
               [T - T0, Source, N, Base, PerText]),
        octopus_error(query, Msg)
    ).

%   probe_regex(+Regex) is det.
%
%   A trigger's or subscription's regex runs on every write, so it must stay within
%   the match limit on each probe text, or octopus_error(query, Message) is raised. Probing
%   a pattern costs at most as much CPU as a query's regex budget allows.

probe_regex(rx(Source, _, Quick, Bounded)) :-
    atom_string(Key, Source),
    (   regex_probed(Key)
    ->  true
    ;   statistics(cputime, T0),
        forall(probe_text(Source, Text, What),
               probe_one(Source, Quick, Bounded, Text, What, T0)),
        assertz(regex_probed(Key))
    ).

probe_one(Source, Quick, Bounded, Text, What, T0) :-
    (   catch(search(Quick, Bounded, Text), error(resource_error(match_limit), _),
              costly_regex(Source, What))
    ->  true
    ;   true
    ),
    statistics(cputime, T),
    regex_limit(query_cpu_base, Base),
    (   T - T0 =< Base
    ->  true
    ;   costly_regex(Source, "all probe texts together")
    ).

costly_regex(Source, What) :-
    regex_limit(trigger_match_steps, Steps),
    regex_limit(subject_length, Length),
    format(string(Msg),
           "regular expression r'~s' is too costly for a trigger or subscription, \c
            which runs it on every write: it exceeds the match limit of ~D steps on \c
            ~w (~D characters); avoid nested quantifiers such as (a+)+ or (.*,)*",
           [Source, Steps, What, Length]),
    octopus_error(query, Msg).

%!  probe_text(+Source, -Text, -What) is nondet.
%
%   The texts a trigger regex is probed with, each as long as the subject limit:
%   each of the first 16 distinct characters of the pattern repeated, then one
%   character of each common class (letters, digits, space, punctuation of names,
%   non-ASCII, newline) repeated, and the pattern itself repeated; each once as it is
%   and once with its last character replaced by U+0001 (a character patterns rarely
%   accept, so that a search has to fail after trying everything, which is where
%   backtracking explodes).

probe_text(Source, Text, What) :-
    regex_limit(subject_length, Length),
    string_codes(Source, Codes),
    list_to_set(Codes, Distinct),
    (   length(Distinct, N), N > 16
    ->  length(First0, 16), append(First0, _, Distinct)
    ;   First0 = Distinct
    ),
    string_codes("aZ7 .-_é\n,", Classes),
    append(First0, Classes, First1),
    list_to_set(First1, First),
    (   member(C, First),
        length(Cs, Length),
        maplist(=(C), Cs),
        format(string(What0), "'~c' repeated", [C])
    ;   Codes \== [],
        repeat_to(Codes, Length, Cs),
        What0 = "the pattern repeated"
    ),
    (   TextCodes = Cs,
        What = What0
    ;   append(Init, [_], Cs),
        append(Init, [1], TextCodes),
        format(string(What), "~w, then U+0001", [What0])
    ),
    string_codes(Text, TextCodes).

repeat_to(Codes, N, Cs) :-
    length(Codes, L),
    Copies is N // L + 1,
    length(Lists, Copies),
    maplist(=(Codes), Lists),
    append(Lists, All),
    length(Cs, N),
    append(Cs, _, All).
