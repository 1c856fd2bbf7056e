:- module(octopus_rules_compile,
          [ compile_watch/8,          % +R, +KB, +Id, +Kind, +Names, +Head, +Variants, +Inf
            direct_index/2,           % +Body0, -Body
            plan/6,                   % +Lits, +Bound, +Head, +KB, +S, -Body
            literal_goal/5,           % +Lit, +Bound, +KB, +S, -Goal
            literal_text/2            % +Lit, -Text
          ]).

/** <module> Rules over live records: compiling a watch or invariant

The variants of a goal (prolog/rules_family.pl) become clauses of the rules module R,
each planned for what is bound when it runs:

  - scan(Id, Head):              every row now;
  - check1(Id, Head):            is this row true (after the change)?
  - check0(Id, On, Od, Head):    is it true with record On as Od (before the change)?
  - gen1(Id, G, Name, New, Head, Kind): generator G, its literal's record bound to
                                 the changed record Name, whose dict after the change
                                 is New (or none);
  - gen0(Id, G, Name, Old, Head, Kind): the same before the change (Old: its dict
                                 then, or none);
  - gen_key(Key, Id, G), gen_anykey(Id, G), gen_exists(Id, G): which change a
    generator must see (prolog/rules_delta.pl turns them into a dispatch table);
  - watched_key(Key): a key some generator reads (the rules' index has it).

Kind says what a row a generator finds tells: pos (found in a state: true there),
negx (found in a state: false there) or neg (nothing; checked). A generator of a
literal inside a negation is negx when the relation has one variant and the negation
shares only row variables with the rest of it: then the negated conjunction holding
for the row makes the row false, whatever else holds.

Each record a clause reads is fetched once: the compiled code keeps the dict of every
record variable it has looked up (and the changed record's dict is an argument of the
generators), so attr(X, a, A), attr(X, b, B) costs one lookup of X.
*/

:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module(match).
:- use_module(errors).
:- use_module(rules_family).
:- use_module(rules_view, [index_build/2]).


%   compile_watch(+R, +KB, +Id, +Kind, +Names, +Head, +Variants, +ChangeInf)
%
%   Assert the clauses of watch Id (see the module's comment).

compile_watch(R, KB, Id, Kind, Names, _, Variants, ChangeInf) :-
    forall(member(V, Variants), check_safe(V)),
    assertz(R:watch(Id, Kind, Names)),
    assertz(R:limit(Id, ChangeInf)),
    length(Variants, N),
    (   N =:= 1 -> Single = true ; Single = false ),
    forall(member(H-Pos-Negs, Variants),
           compile_variant(R, KB, Id, Single, H, Pos, Negs)).

%   compile_variant(+R, +KB, +Id, +Single, +H, +Pos, +Negs)
%
%   The clauses of one variant, each compiled for the state it reads: the store as it
%   is (plain(M), the store's module M known when compiling, so record reads are
%   direct calls), or with the changed record's overlay (over(M, On, Od), On and Od
%   arguments of the clause).

compile_variant(R, KB, Id, Single, H, Pos, Negs) :-
    R:store(M),
    negs_as_literals(Negs, NegLits),
    append(Pos, NegLits, All),
    plan(All, [], H, KB, plain(M), ScanBody),       % every row: nothing bound
    assertz(R:(scan(Id, H) :- ScanBody)),
    term_variables(H, HVs),
    plan(All, HVs, H, KB, plain(M), Check1),        % one row: the row bound
    plan(All, HVs, H, KB, over(M, On, Od), Check0),
    findall(Body, ( generator(Pos, Negs, Kind0, Lit, Rest),
                    gen_kind(Kind0, Single, H, Pos, Negs, Kind),
                    compile_generator(R, KB, M, Id, H, Kind, Lit, Rest, Body) ),
            GenBodies),
    drop_first(ScanBody, ScanRest),
    forall(( member(B, [ScanRest, Check1, Check0|GenBodies]),
             sub_term(T, B),
             compound(T),
             T = octopus_rules_view:table_entry(_, K, _, _),
             atom(K)
           ),
           index_key(R, M, Id, K)),
    direct_index(Check1, Check1D),
    assertz(R:(check1(Id, H) :- Check1D)),
    direct_index(Check0, Check0D),
    assertz(R:(check0(Id, On, Od, H) :- Check0D)).

%!  direct_index(+Body0, -Body) is det.
%
%   Body0 with its lookups in the rules' index of a key (table_entry/4) made direct
%   calls of the index's facts: once the watch whose code it is has registered its
%   keys (index_key/4), they stay indexed as long as it is installed, so the test of
%   table_entry/4 (is the key indexed?) is known. Only the scan of a watch, run when
%   it is installed, keeps table_entry/4 for its first step (drop_first/2).

direct_index(G0, G) :-
    (   var(G0)
    ->  G = G0
    ;   G0 = (A0, B0)
    ->  G = (A, B), direct_index(A0, A), direct_index(B0, B)
    ;   G0 = (A0 ; B0)
    ->  G = (A ; B), direct_index(A0, A), direct_index(B0, B)
    ;   G0 = (A0 -> B0)
    ->  G = (A -> B), direct_index(A0, A), direct_index(B0, B)
    ;   G0 = (\+ A0)
    ->  G = (\+ A), direct_index(A0, A)
    ;   G0 = octopus_rules_view:table_entry(M, K, H, X), atom(K)
    ->  G = M:'$rx'(H, K, X)
    ;   G = G0
    ).

%   The rules' index (prolog/rules_view.pl) is kept for the keys that compiled code
%   looks up by value, or by key inside a join or a check: index_key(Key, Id) for
%   each watch that needs it. A scan that starts with every record having a key
%   visits them once when the watch is installed; that needs no index kept current on
%   every write (a key such as temp, only ever read with its record known, costs a
%   write nothing).

index_key(R, M, Id, K) :-
    (   R:index_key(K, Id)
    ->  true
    ;   assertz(R:index_key(K, Id)),
        index_build(M, K)
    ).

%   drop_first(+ScanBody, -Rest): the scan without its first pass over a key.

drop_first((A, B), (A1, B)) :- !, drop_first(A, A1).
drop_first((A ; B), (A1 ; B)) :- !, drop_first(A, A1).
drop_first(octopus_rules_view:table_entry(_, _, _, _), true) :- !.
drop_first(G, G).

%   generator(+Pos, +Negs, -Kind, -Lit, -Rest) is nondet: Lit, a literal reading a
%   record, and the other literals its generator evaluates: for a positive Lit (Kind
%   pos) the rest of the body, so the rows it finds are true; for Lit inside a
%   negation Neg (Kind neg(Neg)) the positive literals and the rest of that negation
%   (made positive; the other negations are left out: the candidates only need to
%   include every row that may have changed).

generator(Pos, Negs, pos, L, Rest) :-
    nth0(_, Pos, L, Rest0),
    L = view(_),
    negs_as_literals(Negs, NL),
    append(Rest0, NL, Rest).
generator(Pos, Negs, neg(Neg), L, Rest) :-
    member(Neg, Negs),
    nth0(_, Neg, L, NegRest),
    L = view(_),
    append(Pos, NegRest, Rest).

%   gen_kind(+Kind0, +Single, +Head, +Pos, +Negs, -Kind): see the module's comment.

gen_kind(pos, _, _, _, _, pos).
gen_kind(neg(Neg), Single, Head, Pos, Negs, Kind) :-
    term_variables(Head, HVs),
    term_variables(Neg, NVs),
    exclude(==(Neg), Negs, Others),
    term_variables(Pos-Others, OVs),
    (   Single == true,
        forall(( member(V, NVs), occurs_in(OVs, V) ), occurs_in(HVs, V))
    ->  Kind = negx
    ;   Kind = neg
    ).

compile_generator(R, KB, M, Id, H, Kind, view(Lit), Rest, Bodies) :-
    lit_name(Lit, NameArg),
    term_variables(NameArg, Named),         % the name is given: bound when it runs
    term_variables(Lit, Bound0),            % the literal runs first: all bound after it
    flag(octopus_rules_gen, G, G + 1),
    view_goal(Lit, plain(M), Named, [NameArg-New], Dicts1, First1),
    plan(Rest, Bound0, Dicts1, H, KB, plain(M), Rest1),
    conj(First1, Rest1, Body1),
    assertz(R:(gen1(Id, G, NameArg, New, H, Kind) :- New \== none, Body1)),
    S0 = over(M, NameArg, Old),
    view_goal(Lit, S0, Named, [NameArg-Old], Dicts0, First0),
    plan(Rest, Bound0, Dicts0, H, KB, S0, Rest0),
    conj(First0, Rest0, Body0),
    assertz(R:(gen0(Id, G, NameArg, Old, H, Kind) :- Old \== none, Body0)),
    Bodies = Body1-Body0,
    (   Lit = attr(_, K, _), atom(K)
    ->  assertz(R:gen_key(K, Id, G)),
        (   R:watched_key(K)
        ->  true
        ;   assertz(R:watched_key(K))
        )
    ;   Lit = attr(_, _, _)
    ->  assertz(R:gen_anykey(Id, G))
    ;   assertz(R:gen_exists(Id, G))
    ).

lit_name(record(X), X).
lit_name(attr(X, _, _), X).


                 /*******************************
                 *           PLANNING          *
                 *******************************/

%   plan(+Lits, +Bound, +Head, +KB, +S, -Body)
%   plan(+Lits, +Bound, +Dicts, +Head, +KB, +S, -Body)
%
%   Order Lits for evaluation given the variables Bound: ready builtins and
%   negations first (they only filter), then view literals whose record is known,
%   then attr/3 with a known key and value (an index lookup), knowledge-base goals
%   with a bound first argument, attr/3 with a known key, other knowledge-base goals,
%   and last the scans; the order written among equals. S is the state the view
%   literals read (view_goal/6); Dicts the records whose dicts the code before has
%   fetched (Name-Dict pairs).

plan(Lits, Bound, Head, KB, S, Body) :-
    plan(Lits, Bound, [], Head, KB, S, Body).

plan(Lits, Bound, Dicts, Head, KB, S, Body) :-
    plan(Lits, Bound, Dicts, Head, Head, KB, S, Body).

%   plan(+Lits, +Bound, +Dicts, +Head, +Out, +KB, +S, -Body): Out holds the variables
%   the code must leave bound to view values when it ends (the head; nothing in a
%   negation): a value read from a record stays in its stored form until a goal needs
%   the view's (view_needed/4).

plan([], _, Dicts, _, Out, _, _, Body) :- !,
    view_needed(Out, Dicts, _, Body).
plan(Lits, Bound, Dicts, Head, Out, KB, S, Body) :-
    pick(Lits, Bound, Head, L, Rest),
    !,
    literal_goal(L, Bound, Dicts, Dicts1, KB, S, G),
    (   L = neg(_)
    ->  Bound1 = Bound                   % a negation binds nothing
    ;   term_variables(L, Vs),
        append(Vs, Bound, Bound1)
    ),
    plan(Rest, Bound1, Dicts1, Head, Out, KB, S, Body0),
    conj(G, Body0, Body).
plan([L|_], _, _, _, _, _, _, _) :-
    literal_text(L, Text),
    octopus_error(kb, "unsafe rule: ~s cannot run: its arguments are never bound", [Text]).

conj(G, true, G) :- !.
conj(G, B, (G, B)).

pre(true, G, G) :- !.
pre(P, G, (P, G)).

pick(Lits, Bound, Head, L, Rest) :-
    member(Rank, [filter, named, indexed, kb_bound, keyed, kb, scan]),
    select(L, Lits, Rest),
    rank_ok(Rank, L, Bound, Head, Rest),
    !.

rank_ok(filter, bi(G), Bound, _, _) :- ready(bi(G), Bound).
rank_ok(filter, neg(Neg), Bound, Head, Rest) :-
    % shared variables bound; its own (existential) variables are its business
    term_variables(Neg, NVs),
    term_variables(Head-Rest, OVs),
    forall(( member(V, NVs), occurs_in(OVs, V) ), bound_var(V, Bound)).
rank_ok(named, view(L), Bound, _, _) :- lit_name(L, X), bound_term(X, Bound).
rank_ok(indexed, view(attr(_, K, V)), Bound, _, _) :-
    bound_term(K, Bound), bound_term(V, Bound).
rank_ok(kb_bound, kb(G), Bound, _, _) :- compound(G), arg(1, G, A), bound_term(A, Bound).
rank_ok(keyed, view(attr(_, K, _)), Bound, _, _) :- bound_term(K, Bound).
rank_ok(kb, kb(_), _, _, _).
rank_ok(scan, view(_), _, _, _).

bound_term(T, Bound) :-
    term_variables(T, Vs),
    forall(member(V, Vs), bound_var(V, Bound)).

%   literal_goal(+Lit, +Bound, +KB, +S, -Goal): the code of one literal on its own,
%   leaving its variables bound to view values.

literal_goal(L, Bound, KB, S, Goal) :-
    literal_goal(L, Bound, [], Dicts, KB, S, Goal0),
    view_needed(L, Dicts, _, Convert),
    conj(Goal0, Convert, Goal).

literal_goal(bi(G), _, Dicts0, Dicts, _, _, Goal) :- !,
    (   arithmetic(G), G \= (_ is _),
        stored_numbers(G, Dicts0, G1),          % (a number is stored as itself)
        simple_comparison(G1, Tests)
    ->  conj_list(Tests, G1, Goal),           % number(V) tests, then the comparison
        Dicts = Dicts0
    ;   view_needed(G, Dicts0, Dicts, Convert),
        (   arithmetic(G)
        ->  Goal0 = octopus_rules_view:arith(G)
        ;   G = '$link'(A, B)
        ->  Goal0 = (A = B)
        ;   Goal0 = G
        ),
        pre(Convert, Goal0, Goal)
    ).
literal_goal(kb(G), _, Dicts0, Dicts, KB, _, Goal) :- !,
    view_needed(G, Dicts0, Dicts, Convert),
    pre(Convert, KB:G, Goal).
literal_goal(view(L), Bound, Dicts0, Dicts, _, S, Goal) :- !,
    view_goal(L, S, Bound, Dicts0, Dicts, Goal).
literal_goal(neg(Lits), Bound, Dicts, Dicts, KB, S, \+ Body) :-
    plan(Lits, Bound, Dicts, Lits, [], KB, S, Body).  % what it fetches stays inside

%   Values in their stored form. A value read from a record is bound in the code to
%   its stored form only (lazy(V, Stored) in Dicts), not to the view's value, until a
%   goal needs that: a knowledge-base goal, a builtin, the head. Most values read by
%   rules are never needed in the view's form: they name a record to fetch, or are
%   compared with values read from other records, which the stored forms do (the view
%   shows stored values one to one, view_value/2), or are numbers (stored as
%   themselves). An identifier's conversion to an atom is a lookup in the atom table:
%   the most frequent step of an evaluation before.

%   view_needed(+Term, +Dicts0, -Dicts, -Code): Code binds the variables of Term still
%   in their stored form to their view values (true if none is).

view_needed(Term, Dicts0, Dicts, Code) :-
    term_variables(Term, Vs),
    view_needed_(Vs, Dicts0, Dicts, Goals),
    (   Goals == []
    ->  Code = true
    ;   list_conj(Goals, Code)
    ).

view_needed_([], Dicts, Dicts, []).
view_needed_([V|Vs], Dicts0, Dicts, Goals) :-
    (   lazy_raw(V, Dicts0, Raw)
    ->  exclude(is_lazy(V), Dicts0, Dicts1),
        view_code(Raw, V, Convert),
        Goals = [Convert|Goals1]
    ;   Dicts1 = Dicts0,
        Goals = Goals1
    ),
    view_needed_(Vs, Dicts1, Dicts, Goals1).

lazy_raw(V, Dicts, Raw) :- entry(lazy, V, Dicts, Raw).

is_lazy(V, Entry) :- nonvar(Entry), Entry = lazy(V0, _), V0 == V.

%   view_code(?Stored, ?V, -Code): Code binds V to the view value of the stored value
%   Stored: view_value/2 inlined (an identifier [Text] is an atom, any other stored
%   value is itself), as it runs for most values a rule reads.
%   hash_code(?Stored, ?Hash, -Code): Code binds Hash to Stored's index hash:
%   index_hash/2 inlined for identifiers and the values that are their own hash form.

view_code(Stored, V, ( Stored = [S] -> atom_string(V, S) ; V = Stored )).

hash_code(Stored, H, ( Stored = [S] -> term_hash(S, H)
                     ; float(Stored) -> octopus_match:index_hash(Stored, H)
                     ; term_hash(Stored, H)
                     )).

%   stored_numbers(+G, +Dicts, -G1): G with each variable in its stored form replaced
%   by that form (a comparison of numbers reads them as stored: number/1 holds of a
%   stored value exactly when it holds of its view value, and they are equal then).

stored_numbers(G, Dicts, G1) :-
    G =.. [Op|Args],
    maplist(stored_arg(Dicts), Args, Args1),
    G1 =.. [Op|Args1].

stored_arg(Dicts, A, A1) :-
    (   var(A), lazy_raw(A, Dicts, Raw) -> A1 = Raw ; A1 = A ).

list_conj([G], G) :- !.
list_conj([G|Gs], (G, C)) :- list_conj(Gs, C).

%   view_goal(+Literal, +State, +Bound, +Dicts0, -Dicts, -Code)
%
%   The code of a view literal in State, given the variables Bound before it and the
%   records whose dicts are known (Dicts0; Dicts adds the one it fetches), inlined
%   into the compiled clause (the store's module is known, so its facts are called
%   directly). plain(M) reads the store; over(M, On, Od) reads it with record On
%   replaced by Od (a dict, or none: absent). A value known when compiling is matched
%   in its stored form (stored_form/3); a variable key falls back to v_attr/4.

view_goal(record(X), _, _, Dicts, Dicts, true) :-
    known_dict(X, Dicts, _), !.              % fetched: the record exists
view_goal(record(X), S, Bound, Dicts0, Dicts, Code) :- !,
    fetch(X, S, Bound, Dicts0, Dicts1, D, Code),
    remember(X, D, Dicts1, Dicts).
view_goal(attr(X, K, V), S, Bound, Dicts00, Dicts, Code) :-
    atom(K), !,
    (   S = plain(M) -> true ; S = over(M, _, _) ),
    (   nonvar(V)
    ->  view_needed(V, Dicts00, Dicts0, Convert)
    ;   Dicts0 = Dicts00,
        Convert = true
    ),
    (   nonvar(V), \+ compound_value(V)
    ->  (   stored_form(V, Stored, Hash)
        ->  Match = get_dict(K, D, Stored),
            Index = Hash
        ;   Match = fail, Index = _
        ),
        Pre = true,
        Dicts1 = Dicts0
    ;   var(V), bound_var(V, Bound)
    ->  raw_form(V, Dicts0, Raw, Pre, Dicts1),  % compared in the stored form
        Match = ( get_dict(K, D, Value), Value == Raw ),
        Index = raw(Raw)
    ;   var(V), X \== V
    ->  Match = get_dict(K, D, Value),          % V: the stored Value (view_needed/4)
        Pre = true,
        Index = _,
        Dicts1 = [lazy(V, Value), raw(V, Value)|Dicts0]
    ;   view_code(Value, V, Convert0),
        Match = ( get_dict(K, D, Value), Convert0 ),
        Pre = true,
        (   bound_term(V, Bound)
        ->  Index = hash(V),
            Dicts1 = Dicts0
        ;   Index = _,
            (   var(V)
            ->  Dicts1 = [raw(V, Value)|Dicts0]     % V's stored form, for lookups by it
            ;   Dicts1 = Dicts0
            )
        )
    ),
    (   known_dict(X, Dicts1, D0)
    ->  D = D0,
        Dicts = Dicts1,
        Code0 = Match
    ;   bound_term(X, Bound)
    ->  fetch(X, S, Bound, Dicts1, Dicts2, D, Fetch),
        remember(X, D, Dicts2, Dicts),
        Code0 = ( Fetch, Match )
    ;   index_code(Index, M, K, X, Entries),
        remember(X, D, Dicts1, Dicts),
        (   S = plain(M)
        ->  Code0 = ( Entries, octopus_rules_view:rec_(M, X, D), Match )
        ;   S = over(M, On, Od),
            Code0 = ( Entries, X \== On, octopus_rules_view:rec_(M, X, D), Match
                    ; Od \== none, X = On, D = Od, Match
                    )
        )
    ),
    pre(Pre, Code0, Code1),
    pre(Convert, Code1, Code).
view_goal(attr(X, K, V), plain(M), _, Dicts0, Dicts, Code) :-
    view_needed(X-K-V, Dicts0, Dicts, Convert),
    pre(Convert, octopus_rules_view:v_attr(s(M, [], none), X, K, V), Code).
view_goal(attr(X, K, V), over(M, On, Od), _, Dicts0, Dicts, Code) :-
    view_needed(X-K-V, Dicts0, Dicts, Convert),
    pre(Convert, octopus_rules_view:v_attr(s(M, On, Od), X, K, V), Code).

%   raw_form(+V, +Dicts0, -Raw, -Code, -Dicts): Raw is the stored form of the value of
%   the bound variable V: known if V was read from a record (Code true), else computed
%   by Code once (and remembered in Dicts), so that every later read compares stored
%   values (==: the view's values are the stored ones, one to one) instead of
%   converting each value read to compare it with V.

raw_form(V, Dicts0, Raw, Code, Dicts) :-
    (   known_raw(V, Dicts0, Raw0)
    ->  Raw = Raw0,
        Code = true,
        Dicts = Dicts0
    ;   Code = octopus_rules_view:raw_of(V, Raw),
        Dicts = [raw(V, Raw)|Dicts0]
    ).

%   fetch(?X, +S, +Bound, +Dicts0, -Dicts, -D, -Code): Code finds record X (a name
%   known when it runs if X is in Bound, else every record) in state S, with D its
%   dict. A name known when it runs is looked up by its stored form (an identifier is
%   [Text], the store's names are texts), computed once per clause (raw_form/5): a
%   name read from an attribute value needs no conversion to an atom and back; a
%   name known when compiling is converted then.

fetch(X, S, Bound, Dicts00, Dicts, D, Code) :-
    (   S = over(_, _, _), var(X)             % (compared with the overlay's name)
    ->  view_needed(X, Dicts00, Dicts0, Convert)
    ;   Dicts0 = Dicts00,
        Convert = true
    ),
    (   S = plain(M) -> true ; S = over(M, On, Od) ),
    (   atom(X)
    ->  atom_string(X, Text),
        Dicts = Dicts0,
        Lookup = M:rec(Text, _, D),
        Pre = true
    ;   bound_term(X, Bound), var(X)
    ->  raw_form(X, Dicts0, Raw, Pre, Dicts),
        Lookup = ( Raw = [Text], M:rec(Text, _, D) )
    ;   bound_term(X, Bound)
    ->  Dicts = Dicts0,
        Lookup = octopus_rules_view:rec_(M, X, D),
        Pre = true
    ;   Dicts = Dicts0,
        Lookup = none,
        Pre = true
    ),
    (   S = plain(_)
    ->  (   Lookup == none
        ->  Code0 = octopus_rules_view:rec_(M, X, D)
        ;   Code0 = Lookup
        )
    ;   Lookup == none
    ->  Code0 = ( octopus_rules_view:rec_(M, X, D), X \== On
                ; Od \== none, X = On, D = Od )
    ;   Code0 = ( X == On -> Od \== none, D = Od ; Lookup )
    ),
    pre(Pre, Code0, Code1),
    pre(Convert, Code1, Code).

known_raw(V, Dicts, Raw) :- entry(raw, V, Dicts, Raw).

known_dict(X, Dicts, D) :- entry(-, X, Dicts, D).

%   entry(+Tag, +X, +Dicts, -Value): the Value of the first entry Tag(X, Value) of
%   Dicts (X compared with ==: Dicts is about the variables of the clause compiled).

entry(Tag, X, Dicts, Value) :-
    member(Entry, Dicts),
    nonvar(Entry),
    functor(Entry, Tag, 2),
    arg(1, Entry, X0),
    X0 == X,
    !,
    arg(2, Entry, Value).

remember(X, D, Dicts, [X-D|Dicts]) :- ( var(X) ; atom(X) ), !.
remember(_, _, Dicts, Dicts).

%   index_code(+Index, +M, +K, ?X, -Code): the names in key K's index table, all of
%   them or those with the value's hash (computed now, or when the code runs, from
%   the value or from its stored form).

index_code(Index, M, K, X, Code) :-
    (   var(Index)
    ->  Code = octopus_rules_view:table_entry(M, K, _, X)
    ;   Index = hash(V)
    ->  Code = ( octopus_rules_view:view_hash(V, H),
                 octopus_rules_view:table_entry(M, K, H, X) )
    ;   Index = raw(Raw)
    ->  hash_code(Raw, H, Hash),
        Code = ( Hash,
                 octopus_rules_view:table_entry(M, K, H, X) )
    ;   Code = octopus_rules_view:table_entry(M, K, Index, X)
    ).

%   A value known when the rule is compiled is compared in its stored form, with its
%   index hash computed once (no conversion per record read).

compound_value(V) :- compound(V), V \= @(_).

stored_form(V, [S], H) :- atom(V), !, atom_string(V, S), index_hash(S, H).
stored_form(V, V, H) :- string(V), !, index_hash(V, H).
stored_form(V, V, H) :- number(V), !, index_hash(V, H).
stored_form(@(B), @(B), H) :- ( B == true ; B == false ), index_hash(@(B), H).

literal_text(L, Text) :-
    (   L = bi(G) ; L = kb(G) ; L = view(G) ; L = neg(G) ), !,
    copy_term(G, C),
    numbervars(C, 0, _),
    format(string(Text), "~W", [C, [quoted(true), numbervars(true)]]).

%   simple_comparison(+G, -Tests): G compares numbers and variables only: it needs no
%   error handling, just number/1 tests on its variables (numbers never raise).

simple_comparison(G, Tests) :-
    G =.. [_, A, B],
    simple_side(A, TA),
    simple_side(B, TB),
    append(TA, TB, Tests).

simple_side(X, []) :- number(X), !.
simple_side(X, [number(X)]) :- var(X).

conj_list([], G, G).
conj_list([T|Ts], G, (T, Rest)) :- conj_list(Ts, G, Rest).
