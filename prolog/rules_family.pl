:- module(octopus_rules_family,
          [ variants/5,               % +KB, +Stack, +Head, +Goal, -Variants
            variant/4,                % +Ctx, +Body, -Pos, -Negs
            check_variants/2,         % +Variants0, -Variants
            check_safe/1,             % +Variant
            negs_as_literals/2,       % +Negs, -Literals
            builtin/2,                % ?Goal, -Inputs
            arithmetic/1,             % +Goal
            ready/2,                  % +Literal, +Bound
            bound_var/2,              % +Var, +Bound
            occurs_in/2               % +Vars, +Var
          ]).

/** <module> Rules over live records: the rule family

Derived watches and invariants are made of *compiled* rules (docs/rules.md, "Rules and
the rule family"): a goal is unfolded through the knowledge base's rules into variants,
each a conjunction of positive literals (record/1, attr/3, calls of knowledge-base
predicates that do not read records, and pure builtins) and negated conjunctions of
such literals. Rules that recurse through records, negation inside a negation that
reads records, aggregates, if-then-else or cut over records are refused with a clear
error, and so are unsafe rules (check_safe/1) and rules calling knowledge-base code the
sandbox would refuse.
*/

:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module(library(sandbox), [safe_goal/1]).
:- use_module(errors).

variants(KB, Stack, Head, Goal, Variants) :-
    findall(Head-Pos-Negs, variant(ctx(KB, [], Stack), Goal, Pos, Negs), Variants0),
    check_variants(Variants0, Variants).

check_variants(Variants0, Variants) :-
    length(Variants0, N),
    max_variants(Max),
    (   N > Max
    ->  octopus_error(kb, "the rule unfolds into ~D variants (at most ~D)", [N, Max])
    ;   maplist(separate_negations, Variants0, Variants)
    ).

%   separate_negations(+Variant0, -Variant): the variables of a negation that occur
%   neither in the row nor in a positive literal are its own (existential), even if
%   another negation has them too (\+ a(X), \+ b(X): no X with a(X), and no X with
%   b(X)); unfolding one negation into several can leave them shared, so each
%   negation gets fresh copies of them.

separate_negations(H-Pos-Negs0, H-Pos-Negs) :-
    term_variables(H-Pos, Outer),
    maplist(own_copy(Outer), Negs0, Negs).

own_copy(Outer, Neg0, Neg) :-
    copy_term(Outer-Neg0, Outer1-Neg),
    Outer1 = Outer.

max_variants(256).


                 /*******************************
                 *    NORMALIZATION (FAMILY)   *
                 *******************************/

%   variant(+Ctx, +Body, -Pos, -Negs) is nondet.
%
%   One variant of Body (one way through its disjunctions and through the clauses of
%   the rules it calls): Pos a list of literals view(record(X)), view(attr(X,K,V)),
%   kb(Goal) (a knowledge-base goal that reads no record) and bi(Goal) (a builtin of
%   builtin/2), Negs a list of negated conjunctions, each a list of such literals.
%   Ctx is ctx(KB, Pending, Stack): Stack the rules being unfolded (recursion check).

variant(Ctx, Body, Pos, Negs) :-
    variant_(Body, Ctx, Pos, [], Negs, []).

variant_(V, _, _, _, _, _) :-
    var(V), !,
    octopus_error(kb, "a rule may not call a variable goal").
variant_(true, _, P, P, N, N) :- !.
variant_((A, B), Ctx, P0, P, N0, N) :- !,
    variant_(A, Ctx, P0, P1, N0, N1),
    variant_(B, Ctx, P1, P, N1, N).
variant_(G, Ctx, P0, P, N0, N) :-
    if_then_else(G), !,
    (   reads_records(Ctx, G)
    ->  octopus_error(kb, "if-then-else over records is not in the rule family (write \c
                           the cases as clauses, with negation)")
    ;   P0 = [kb(G)|P],
        N0 = N
    ).
variant_((A ; B), Ctx, P0, P, N0, N) :- !,
    (   variant_(A, Ctx, P0, P, N0, N)
    ;   variant_(B, Ctx, P0, P, N0, N)
    ).
variant_(\+ G, Ctx, P0, P, N0, N) :- !,
    (   reads_records(Ctx, G)
    ->  P0 = P,
        negation(Ctx, G, Conjs),
        append(Conjs, N, N0)
    ;   P0 = [kb(\+ G)|P],
        N0 = N
    ).
variant_(record(X), _, [view(record(X))|P], P, N, N) :- !.
variant_(attr(X, K, V), _, [view(attr(X, K, V))|P], P, N, N) :- !.
variant_(G, _, [bi(G)|P], P, N, N) :-
    builtin(G, _), !,
    (   arithmetic(G), impure_arithmetic(G)
    ->  octopus_error(kb, "~q evaluates something that changes by itself (random, \c
                           the clock): not in the rule family", [G])
    ;   true
    ).
variant_(G, Ctx, P0, P, N0, N) :-
    reads_records(Ctx, G), !,
    unfold(Ctx, G, P0, P, N0, N).
variant_(G, Ctx, [kb(G)|P], P, N, N) :-
    static_goal(Ctx, G), !.

%   A goal the rule calls and that reads records must be a rule of the knowledge base
%   (or of the text being declared) whose clauses are unfolded in turn.

unfold(Ctx, G, P0, P, N0, N) :-
    Ctx = ctx(KB, Pending, Stack),
    functor(G, Name, Arity),
    (   memberchk(Name/Arity, Stack)
    ->  octopus_error(kb, "~w/~w is recursive through records: recursion is not in \c
                           the rule family", [Name, Arity])
    ;   length(Stack, Depth), Depth > 32
    ->  octopus_error(kb, "rules nest more than 32 deep")
    ;   true
    ),
    (   control(G)
    ->  octopus_error(kb, "~w over records is not in the rule family (joins, \c
                           negation and comparisons are)", [Name/Arity])
    ;   true
    ),
    Ctx1 = ctx(KB, Pending, [Name/Arity|Stack]),
    rule_clause(Ctx, G, Body),
    variant_(Body, Ctx1, P0, P, N0, N).

rule_clause(ctx(_, Pending, _), G, Body) :-
    functor(G, Name, Arity),
    memberchk(Name/Arity-Clauses, Pending), !,
    member(Clause, Clauses),
    copy_term(Clause, (G :- Body)).
rule_clause(ctx(KB, _, _), G, Body) :-
    clause(KB:G, Body).

%   negation(+Ctx, +G, -Conjs): the negated conjunctions of \+ G. Each variant of G
%   becomes one (\+ (C1 ; C2) is \+ C1, \+ C2). Unfolding may bind the variables G
%   shares with the rest of the rule (a clause head p(a, X)); under a negation that
%   must stay a test, so each conjunction starts with the equation, unless its copy
%   of those variables is still distinct variables.

negation(Ctx, G, Conjs) :-
    term_variables(G, GVs),
    findall(GVs-Pos, ( variant(Ctx, G, Pos, Negs),
                       (   Negs == []
                       ->  true
                       ;   octopus_error(kb, "a negation inside a negation that reads \c
                                              records is not in the rule family")
                       ) ),
            Copies),
    maplist(link(GVs), Copies, Conjs).

link(GVs, Copy-Pos, Conj) :-
    (   distinct_vars(Copy)
    ->  GVs = Copy,
        Conj = Pos
    ;   Conj = [bi('$link'(GVs, Copy))|Pos]
    ).

distinct_vars(L) :-
    maplist(var, L),
    sort(L, S),
    length(L, N),
    length(S, N).

if_then_else((_ -> _ ; _)).
if_then_else((_ *-> _ ; _)).
if_then_else((_ -> _)).
if_then_else((_ *-> _)).

control(G) :-
    callable(G),
    functor(G, Name, Arity),
    memberchk(Name/Arity, [ (->)/2, (*->)/2, (;)/2, (',')/2, (\+)/1, findall/3, findall/4,
                            forall/2,
                            aggregate_all/3, aggregate_all/4, bagof/3, setof/3,
                            call/1, call/2, call/3, call/4, call/5, call/6, once/1,
                            ignore/1, not/1, catch/3, (^)/2, limit/2, offset/2,
                            order_by/2, distinct/1, distinct/2 ]).

%   static_goal(+Ctx, +Goal) is det.
%
%   Goal reads no record and may be called by a rule: a predicate of the knowledge
%   base (or of the text being declared), a builtin of builtin/2, or a control
%   construct or aggregate (if-then-else, \+, findall/3, ...) over such goals. A rule
%   calls nothing else: no system predicate with an effect (assertz/1, halt/0, I/O),
%   whatever the knowledge base may do in its own code. Raises otherwise.

static_goal(_, G) :-
    var(G), !,
    octopus_error(kb, "a rule may not call a variable goal").
static_goal(_, G) :-
    builtin(G, _), !.
static_goal(ctx(KB, Pending, _), G) :-
    callable(G),
    functor(G, Name, Arity),
    (   memberchk(Name/Arity-_, Pending)
    ;   current_predicate(KB:Name/Arity),
        functor(H, Name, Arity),
        predicate_property(KB:H, implementation_module(KB)),
        sandboxed(KB, G)
    ), !.
static_goal(Ctx, G) :-
    control(G), !,
    (   meta_var(G)
    ->  octopus_error(kb, "a rule may not call a variable goal")
    ;   forall(sub_goal(G, Sub), static_goal(Ctx, Sub))
    ).
static_goal(_, G) :-
    (   callable(G)
    ->  functor(G, Name, Arity)
    ;   Name = G, Arity = 0
    ),
    (   functor(H, Name, Arity), predicate_property(system:H, defined)
    ->  octopus_error(kb, "~w/~w is not allowed in a rule (rules call record/1, attr/3, \c
                           knowledge-base predicates and pure builtins: docs/rules.md)",
                      [Name, Arity])
    ;   octopus_error(kb, "unknown procedure in a rule: ~w/~w", [Name, Arity])
    ).

%   reads_records(+Ctx, +Goal) is semidet.
%
%   Goal's call graph reaches record/1 or attr/3. Facts-only predicates are skipped
%   at once (pci.ids holds 35,000 facts).

reads_records(Ctx, G) :-
    reaches_view(Ctx, G, [], _),
    !.

reaches_view(_, G, _, _) :- var(G), !, fail.
reaches_view(_, record(_), _, _) :- !.
reaches_view(_, attr(_, _, _), _, _) :- !.
reaches_view(Ctx, G, Seen, Seen1) :-
    sub_goal(G, Sub),
    Sub \== G,
    !,
    reaches_sub(Ctx, G, Seen, Seen1).
reaches_view(Ctx, G, Seen, Seen1) :-
    callable(G),
    functor(G, Name, Arity),
    \+ memberchk(Name/Arity, Seen),
    Seen0 = [Name/Arity|Seen],
    defining_bodies(Ctx, G, Bodies),
    member(B, Bodies),
    reaches_view(Ctx, B, Seen0, Seen1).

reaches_sub(Ctx, G, Seen, Seen1) :-
    sub_goal(G, Sub),
    reaches_view(Ctx, Sub, Seen, Seen1).

%   sub_goal(+Goal, -Sub): the goals a control construct or meta-predicate calls.

sub_goal((A, _), A).
sub_goal((_, B), B).
sub_goal((A ; _), A).
sub_goal((_ ; B), B).
sub_goal((A -> _), A).
sub_goal((_ -> B), B).
sub_goal((A *-> _), A).
sub_goal((_ *-> B), B).
sub_goal(\+ A, A).
sub_goal(G, Sub) :-
    compound(G),
    \+ memberchk(G, [(_, _), (_ ; _), (_ -> _), (_ *-> _), \+ _]),
    meta_goal_arg(G, Sub).

meta_goal_arg(G, Sub) :-
    goal_arg(G, Sub),
    nonvar(Sub).

%   meta_var(+Goal): a goal argument of Goal is a variable (call(G), findall(X, G, L)).

meta_var(G) :-
    goal_arg(G, Sub),
    var(Sub),
    !.

%   goal_arg(+Goal, -Sub): Sub is (on backtracking) each goal argument of Goal, a
%   system meta-predicate's, with ^ prefixes removed.

goal_arg(G, Sub) :-
    functor(G, Name, Arity),
    functor(Spec, Name, Arity),
    predicate_property(system:Spec, meta_predicate(Spec)),
    arg(I, Spec, S),
    ( integer(S) ; S == (^) ),
    arg(I, G, Sub0),
    strip_carets(Sub0, Sub).

strip_carets(G, G) :- var(G), !.
strip_carets(_^G0, G) :- !, strip_carets(G0, G).
strip_carets(G, G).

defining_bodies(ctx(_, Pending, _), G, Bodies) :-
    functor(G, Name, Arity),
    memberchk(Name/Arity-Clauses, Pending), !,
    findall(B, ( member((_ :- B0), Clauses), B0 \== true, copy_term(B0, B) ), Bodies).
defining_bodies(ctx(KB, _, _), G, Bodies) :-
    functor(G, Name, Arity),
    functor(H, Name, Arity),
    (   predicate_property(KB:H, defined),
        \+ predicate_property(KB:H, imported_from(_)),
        \+ predicate_property(KB:H, number_of_rules(0))
    ->  findall(B, ( clause(KB:H, B), B \== true ), Bodies)
    ;   Bodies = []
    ).

%   builtin(?Goal, -Inputs): the builtins a rule may use, and which of their arguments
%   must be bound before they run (a list of argument positions; any([..]) when one
%   of them suffices). Arithmetic ones fail on non-numbers instead of raising.

builtin(true, []).
builtin('$link'(_, _), []).             % a negation's equation (negation/3)
builtin(_ = _, any([1, 2])).
builtin(_ \= _, [1, 2]).
builtin(_ == _, [1, 2]).
builtin(_ \== _, [1, 2]).
builtin(_ @< _, [1, 2]).
builtin(_ @> _, [1, 2]).
builtin(_ @=< _, [1, 2]).
builtin(_ @>= _, [1, 2]).
builtin(_ < _, [1, 2]).
builtin(_ > _, [1, 2]).
builtin(_ =< _, [1, 2]).
builtin(_ >= _, [1, 2]).
builtin(_ =:= _, [1, 2]).
builtin(_ =\= _, [1, 2]).
builtin(_ is _, [2]).
builtin(atom(_), [1]).
builtin(string(_), [1]).
builtin(number(_), [1]).
builtin(integer(_), [1]).
builtin(float(_), [1]).
builtin(atomic(_), [1]).
builtin(is_list(_), [1]).
builtin(atom_string(_, _), any([1, 2])).
builtin(atom_number(_, _), [1]).
builtin(number_string(_, _), any([1, 2])).
builtin(atom_length(_, _), [1]).
builtin(string_length(_, _), [1]).
builtin(atom_concat(_, _, _), any([[1, 2], [3]])).
builtin(string_concat(_, _, _), any([[1, 2], [3]])).
builtin(sub_atom(_, _, _, _, _), [1]).
builtin(sub_string(_, _, _, _, _), [1]).
builtin(upcase_atom(_, _), [1]).
builtin(downcase_atom(_, _), [1]).
builtin(string_lower(_, _), [1]).
builtin(string_upper(_, _), [1]).
builtin(term_to_atom(_, _), any([1, 2])).
builtin(between(_, _, _), [1, 2]).
builtin(succ(_, _), any([1, 2])).
builtin(plus(_, _, _), any([[1, 2], [1, 3], [2, 3]])).
builtin(member(_, _), [2]).
builtin(memberchk(_, _), [2]).
builtin(length(_, _), [1]).
builtin(nth0(_, _, _), [2]).
builtin(nth1(_, _, _), [2]).
builtin(last(_, _), [1]).
builtin(msort(_, _), [1]).
builtin(sort(_, _), [1]).
builtin(sum_list(_, _), [1]).
builtin(max_list(_, _), [1]).
builtin(min_list(_, _), [1]).
builtin(ground(_), [1]).

arithmetic(G) :-
    functor(G, Name, 2),
    memberchk(Name, [<, >, =<, >=, =:=, =\=, is]).

%   impure_arithmetic(+G): G evaluates something that changes by itself (random,
%   the clock): its truth would change without a change of the records.

impure_arithmetic(G) :-
    sub_term(T, G),
    callable(T),
    functor(T, Name, _),
    memberchk(Name, [random, random_float, cputime, realtime]),
    !.

                 /*******************************
                 *            SAFETY           *
                 *******************************/

%   check_safe(+Variant): range restriction, in the order the rule is written (so
%   the knowledge base's own evaluation of the rule, left to right, is well defined
%   and means what the compiled one does): every builtin's inputs and every variable
%   a negation shares with the rest are bound by the literals before it, and every
%   head variable by some positive literal.

check_safe(Head-Pos-Negs) :-
    safe_in_order(Pos, [], Bound),
    forall(member(Neg, Negs), safe_negation(Neg, Head-Pos-Negs, Bound)),
    term_variables(Head, HVs),
    (   member(V, HVs), \+ bound_var(V, Bound)
    ->  octopus_error(kb, "unsafe rule: a variable of the row is not bound by a \c
                           positive literal (record/1, attr/3 or a knowledge-base goal)")
    ;   true
    ).

safe_in_order([], B, B).
safe_in_order([L|Ls], B0, B) :-
    (   ready(L, B0)
    ->  term_variables(L, Vs),
        append(Vs, B0, B1),
        safe_in_order(Ls, B1, B)
    ;   L = bi(G),
        functor(G, Name, Arity),
        octopus_error(kb, "unsafe rule: ~w/~w is called before its arguments are bound \c
                           (put it after the literals that bind them)", [Name, Arity])
    ).

safe_negation(Neg, Variant, Bound) :-
    Variant = Head-Pos-Negs,
    outer_vars(Neg, Head, Pos, Negs, Shared),
    (   member(V, Shared), \+ bound_var(V, Bound)
    ->  octopus_error(kb, "unsafe rule: a negation uses a variable that no positive \c
                           literal binds")
    ;   true
    ),
    safe_in_order(Neg, Bound, _).

%   outer_vars(+Neg, +Head, +Pos, +Negs, -Shared): the variables of Neg that occur
%   outside it (in the head, the positive literals or another negation).

outer_vars(Neg, Head, Pos, Negs, Shared) :-
    term_variables(Neg, NVs),
    exclude_neg(Negs, Neg, Others),
    term_variables(Head-Pos-Others, OVs),
    include(occurs_in(OVs), NVs, Shared).

exclude_neg([], _, []).
exclude_neg([N|Ns], Neg, Os) :-
    (   N == Neg -> Os = Os1 ; Os = [N|Os1] ),
    exclude_neg(Ns, Neg, Os1).

occurs_in(Vs, V) :- member(W, Vs), W == V, !.

bound_var(V, Bound) :- member(W, Bound), W == V, !.

%   ready(+Literal, +Bound) is semidet: Literal may run with Bound bound.

ready(bi(G), Bound) :- !,
    builtin(G, Inputs),
    inputs_bound(Inputs, G, Bound).
ready(_, _).

inputs_bound(any(Alternatives), G, Bound) :- !,
    member(A, Alternatives),
    (   integer(A) -> Is = [A] ; Is = A ),
    inputs_bound(Is, G, Bound), !.
inputs_bound(Is, G, Bound) :-
    forall(member(I, Is),
           ( arg(I, G, Arg), term_variables(Arg, Vs),
             forall(member(V, Vs), bound_var(V, Bound)) )).

%   negs_as_literals(+Negs, -Literals): each negated conjunction as a literal neg(C).

negs_as_literals([], []).
negs_as_literals([N|Ns], [neg(N)|Ls]) :- negs_as_literals(Ns, Ls).


                 /*******************************
                 *          THE SANDBOX        *
                 *******************************/

%   sandboxed(+KB, +Goal): Goal passes the knowledge base's sandbox (prolog/skb.pl,
%   wall 1), as it must to run through prolog(): a rule runs knowledge-base code
%   inside a write, and must not be a way around the sandbox. Raises otherwise.

sandboxed(KB, G) :-
    copy_term(G, Copy),
    catch(safe_goal(KB:Copy), E, sandbox_refused(G, E)).

sandbox_refused(G, E) :-
    functor(G, Name, Arity),
    (   E = error(permission_error(call, sandboxed, What), _)
    ->  (   What = _:W -> true ; W = What ),
        (   W = octopus_skb:denied(D) -> true ; D = W ),
        ( callable(D) -> functor(D, DN, DA) ; DN = D, DA = 0 ),
        octopus_error(kb, "~w/~w calls ~w/~w, which the knowledge base's sandbox \c
                           refuses: not in a rule", [Name, Arity, DN, DA])
    ;   octopus_error(kb, "~w/~w does not pass the knowledge base's sandbox: not in \c
                           a rule", [Name, Arity])
    ).

%   The view is safe for the knowledge base's sandbox (prolog/skb.pl, wall 1): it only
