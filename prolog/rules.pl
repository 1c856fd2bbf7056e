:- module(octopus_rules,
          [ rules_view/3,             % +KB, +Store, -Reply
            rules_create/3,           % +Rules, +Store, -Reply
            rules_destroy/3,          % +Rules, +Store, -Reply
            rules_parse/3,            % +KB, +Text, -Reply
            rules_declare/3,          % +Rules, +Decls, -Reply
            rules_relation/5,         % +Rules, +Name, +Arity, +Args, -Reply
            rules_install/8,          % +Rules, +KB, +Store, +Id, +Spec, +Limits, +Initial, -Reply
            rules_remove/4,           % +Rules, +Store, +Id, -Reply
            rules_change/8,           % +Store, +Name, +Old, +New, +Rev, +Forced, +Rows0, -Rows
            rules_explain/6           % +KB, +Store, +Text, +Bindings, +Limits, -Reply
          ]).

/** <module> Rules over live records: the record view, derived watches, invariants

The knowledge base sees the live records of its engine through two predicates, defined
(static, so knowledge-base code cannot redefine them) in its module KB by rules_view/3:

  - record(Name):         Name (an atom) is a stored record;
  - attr(Name, Key, Value): the record Name has Value for Key. Values have the query
                          language's types: identifiers are atoms, strings SWI
                          strings, numbers numbers, booleans @(true) and @(false).

Both read the store module and nothing else; neither can change it.

Derived watches and invariants are *compiled* rules (the rule family, docs/rules.md):
a goal is unfolded through the knowledge base's rules into variants, each a
conjunction of positive literals (record/1, attr/3, calls of knowledge-base predicates
that do not read records, and pure builtins) and negated conjunctions of such
literals. Rules that recurse through records, negation inside a negation that reads
records, aggregates, if-then-else or cut over records are refused with a clear error.

Keeping a relation current (the delta rule). A change of one record N turns the store
D into D'. Every row that appears or disappears has a derivation, in D or in D', that
reads N through one of its literals L (positive, or inside a negation that turned):
otherwise its truth could not have changed. So the candidates are the heads found by
*generators*, each the variant's body evaluated with L's record bound to N, first
(index lookups), in D and in D': for a positive L the whole body, for L inside a
negated conjunction the positive literals and that conjunction made positive. Each
candidate is then checked in D and in D' (a point query with the head bound): rows
true only in D' appear, rows true only in D disappear. A generator runs only if its
literal could have changed: attr(N, K, _) when N's K changed, record(N) when N came
or went. A change nobody's rules read costs one lookup per changed key.

D is D' with N as it was: the evaluation runs inside the store's transaction, after
the write, and reads through a state s(Store, Name, Overlay) in which the record Name
is Overlay (a dict, or none) whatever the store holds. An invariant whose violation
relation gains a row throws, so the transaction - and the write - is undone.

Evaluation is bounded by inferences (call_with_inference_limit/3): at installation
(the whole relation) and per change per watch. A watch over its limit on a change is
removed (the write goes on: Python delivers its REMOVED event); an invariant over its
limit rejects the write (it cannot be checked, so it is not given up silently).

Data lives in two modules per engine, named by the Python side from a counter:

  - Rules: store(Store), watch(Id, Kind, Names), scan(Id, Head), check1(Id, Head),
    check0(Id, OverName, Overlay, Head), gen1(Id, G, N, Head, Kind), gen0(Id, G, N,
    OverName, Overlay, Head, Kind) (compile_variant/6), gen_key(Key, Id, G),
    watched_key(Key), gen_anykey(Id, G), gen_exists(Id, G),
    limit(Id, Inferences), relation(Name, Arity, ArgNames);
  - the store module holds '$rules'(Rules) while any watch or invariant exists: the
    store's writes call rules_change/8 only then.
*/

:- use_module(library(apply)).
:- use_module(library(error)).
:- use_module(library(lists)).
:- use_module(library(pairs)).
:- use_module(library(sandbox), [safe_goal/1]).
:- use_module(match).
:- use_module(errors).


                 /*******************************
                 *          THE VIEW           *
                 *******************************/

%!  rules_view(+KB, +Store, -Reply) is det.
%
%   Give KB the read-only view of Store: record/1 and attr/3, defined (static) in a
%   module of their own, Store_view, and imported into KB. An imported predicate
%   cannot be declared dynamic, asserted or retracted in KB, so knowledge-base code
%   cannot add facts to the view or take its clauses away (a static predicate of
%   KB's own could be turned dynamic by a dynamic/1 directive and then extended).

rules_view(KB, M, @(true)) :-
    must_be(atom, KB),
    must_be(atom, M),
    atom_concat(M, '_view', V),
    forall(view_definition(M, Head, Body),
           ( functor(Head, Name, Arity),
             abolish(V:Name/Arity),
             assertz(V:(Head :- Body)),
             compile_predicates([V:Name/Arity]),
             V:export(Name/Arity),
             (   current_predicate(KB:Name/Arity),      % (no autoloading: the
                 \+ predicate_property(KB:Head, imported_from(_))   % library's record/1)
             ->  abolish(KB:Name/Arity)
             ;   true
             ),
             KB:import(V:Name/Arity)
           )).

view_definition(M, record(N), octopus_rules:v_record(s(M, [], none), N)).
view_definition(M, attr(N, K, V), octopus_rules:v_attr(s(M, [], none), N, K, V)).

%   v_record(+State, ?Name) is nondet.
%   v_attr(+State, ?Name, ?Key, ?Value) is nondet.
%
%   The view in State: s(Store, OverName, Overlay) reads Store except that the record
%   OverName is Overlay (a dict, or none: absent). Without an overlay OverName is []
%   (never an atom, so never a name).

v_record(s(M, On, Od), X) :-
    (   atom(X)
    ->  (   X == On
        ->  Od \== none
        ;   rec_(M, X, _)
        )
    ;   var(X)
    ->  (   rec_(M, X, _),
            X \== On
        ;   Od \== none,
            X = On
        )
    ).

v_attr(S, X, K, V) :-
    atom(X),
    !,
    v_dict(S, X, D),
    v_get(K, D, V).
v_attr(s(M, On, Od), X, K, V) :-
    var(X),
    (   v_candidate(M, K, V, X),
        X \== On,
        rec_(M, X, D),
        v_get(K, D, V)
    ;   Od \== none,
        X = On,
        v_get(K, Od, V)
    ).

%   v_attr_const(+State, ?Name, +Key, +Stored, +Hash): attr(Name, Key, V) for a value
%   V known in advance, given in its stored form and with its index hash.

v_attr_const(S, X, K, Stored, _) :-
    atom(X),
    !,
    v_dict(S, X, D),
    get_dict(K, D, Stored).
v_attr_const(s(M, On, Od), X, K, Stored, H) :-
    var(X),
    (   table_entry(M, K, H, X),
        X \== On,
        rec_(M, X, D),
        get_dict(K, D, Stored)
    ;   Od \== none,
        X = On,
        get_dict(K, Od, Stored)
    ).

v_dict(s(M, On, Od), X, D) :-
    (   X == On
    ->  Od \== none,
        D = Od
    ;   rec_(M, X, D)
    ).

%   rec_(+Store, ?Name, -Dict) is nondet: the record Name (an atom: the view's names
%   are identifiers) of Store, which holds names as strings.

rec_(M, X, D) :-
    (   atom(X)
    ->  atom_string(X, S),
        M:rec(S, _, D)
    ;   var(X)
    ->  M:rec(S, _, D),
        atom_string(X, S)
    ).

%   v_candidate(+Store, ?Key, ?Value, -Name): names worth looking at, from the key's
%   index when the key is known (and its value's hash when the value is).

v_candidate(M, K, V, X) :-
    atom(K),
    !,
    (   nonvar(V)
    ->  view_hash(V, H)
    ;   true
    ),
    table_entry(M, K, H, X).
v_candidate(M, K, _, X) :-
    var(K),
    rec_(M, X, _).

v_get(K, D, V) :-
    (   atom(K)
    ->  get_dict(K, D, S),
        view_value(S, V)
    ;   var(K)
    ->  get_dict(K, D, S),
        view_value(S, V)
    ).

%   view_value(+Stored, -Value): a stored value as the view shows it.

view_value(S, V) :- number(S), !, V = S.
view_value(S, V) :- string(S), !, V = S.
view_value([S], V) :- !, atom_string(A, S), V = A.
view_value(@(B), @(B)).

%   view_hash(+Value, -Hash) is semidet: the index hash of the stored values a view
%   value can be (fails for terms no record holds).

view_hash(V, H) :- atom(V), !, atom_string(V, S), index_hash(S, H).
view_hash(V, H) :- string(V), !, index_hash(V, H).
view_hash(V, H) :- number(V), !, index_hash(V, H).
view_hash(@(B), H) :- ( B == true ; B == false ), !, index_hash(@(B), H).


                 /*******************************
                 *     RULES MODULE, RELATIONS *
                 *******************************/

%!  rules_create(+Rules, +Store, -Reply) is det.
%!  rules_destroy(+Rules, +Store, -Reply) is det.

rules_create(R, M, @(true)) :-
    must_be(atom, R),
    must_be(atom, M),
    retractall(R:store(_)),
    dynamic([ R:watch/3, R:gen0/7, R:gen1/5, R:check0/4, R:check1/2, R:scan/2,
              R:gen_key/3, R:watched_key/1, R:gen_anykey/2, R:store/1,
              R:gen_exists/2, R:limit/2, R:relation/3, M:'$rules'/1 ]),
    assertz(R:store(M)).

rules_destroy(R, M, @(true)) :-
    retractall(M:'$rules'(_)),
    forall(R:watch(Id, _, _), forget(R, Id)),
    retractall(R:relation(_, _, _)).

%!  rules_parse(+KB, +Text, -Reply) is det.
%
%   Check that every predicate Text defines is in the rule family, as it would be
%   with Text loaded into KB (its clauses are unfolded from the text, the others from
%   KB). Reply is [[Name, Arity, ArgNames], ...], ArgNames from the head variables of
%   its clauses (the first variable name seen at each position), else A<i>. Nothing
%   is loaded or declared.

rules_parse(KB, Text, Decls) :-
    setup_call_cleanup(open_string(Text, In),
                       read_rule_terms(In, KB, Terms),
                       close(In)),
    pending(Terms, Pending),
    findall(PI-Names, ( member(T, Terms), term_decl(T, PI, Names) ), Heads0),
    keysort(Heads0, Heads),
    group_pairs_by_key(Heads, Groups),
    maplist(check_relation(KB, Pending), Groups, Decls).

read_rule_terms(In, KB, Terms) :-
    catch(read_term(In, T, [module(KB), variable_names(VNs), syntax_errors(error)]),
          error(syntax_error(What), Context),
          rules_syntax_error(What, Context)),
    (   T == end_of_file
    ->  Terms = []
    ;   T = (:- _)
    ->  read_rule_terms(In, KB, Terms)
    ;   (   T = (_ --> _)
        ->  dcg_translate_rule(T, C)
        ;   C = T
        ),
        (   C = (H :- _) -> true ; H = C ),
        (   callable(H), \+ H = _:_
        ->  true
        ;   octopus_error(kb, "not a clause of this knowledge base: ~q", [T])
        ),
        Terms = [C-VNs|Terms1],
        read_rule_terms(In, KB, Terms1)
    ).

rules_syntax_error(What, Context) :-
    (   Context = stream(_, Line, Col, _) -> true ; Line = '?', Col = '?' ),
    octopus_error(kb, "syntax error in rules at line ~w, column ~w: ~w",
                  [Line, Col, What]).

pending(Terms, Pending) :-
    findall(PI-(H :- B),
            ( member(C-_, Terms),
              ( C = (H :- B) -> true ; H = C, B = true ),
              functor(H, N, A), PI = N/A ),
            Pairs0),
    keysort(Pairs0, Pairs),
    group_pairs_by_key(Pairs, Pending).

term_decl(C-VNs, Name/Arity, Names) :-
    (   C = (H :- _) -> true ; H = C ),
    functor(H, Name, Arity),
    H =.. [_|Args],
    arg_names(Args, VNs, 1, Names).

check_relation(KB, Pending, (Name/Arity)-NameLists, [Name, Arity, Names]) :-
    merge_names(NameLists, Names),
    (   memberchk(Name/Arity, [record/1, attr/3])
    ->  octopus_error(kb, "~w/~w is the record view; rules cannot define it",
                      [Name, Arity])
    ;   true
    ),
    functor(Goal, Name, Arity),
    Goal =.. [_|Args],
    Head =.. [row|Args],
    findall(Head-Pos-Negs, variant(ctx(KB, Pending, []), Goal, Pos, Negs), Variants0),
    check_variants(Variants0, Variants),
    forall(member(V, Variants), check_safe(V)),
    forall(member(H-P-N, Variants),
           ( negs_as_literals(N, NL), append(P, NL, All),
             \+ \+ plan(All, [], H, KB, _, _) )).

%!  rules_declare(+Rules, +Decls, -Reply) is det.
%
%   Declare the relations of rules_parse/3 (after their text is loaded): they may be
%   watched by name (rules_relation/5, and over the wire).

rules_declare(R, Decls, @(true)) :-
    forall(member([Name, Arity, Names], Decls),
           ( retractall(R:relation(Name, Arity, _)),
             assertz(R:relation(Name, Arity, Names)) )).

arg_names([], _, _, []).
arg_names([A|As], VNs, I, [N|Ns]) :-
    (   var(A), member(N0=V, VNs), V == A, \+ sub_atom(N0, 0, _, _, '_')
    ->  N = N0
    ;   format(atom(N), "A~d", [I])
    ),
    I1 is I + 1,
    arg_names(As, VNs, I1, Ns).

%   merge_names(+Lists, -Names): per position, the first real variable name.

merge_names([Names], Names) :- !.
merge_names([N1, N2|Ls], Names) :-
    maplist(better_name, N1, N2, N12),
    merge_names([N12|Ls], Names).

better_name(A, B, N) :-
    (   generated_name(A), \+ generated_name(B) -> N = B ; N = A ).

generated_name(N) :-
    sub_atom(N, 0, 1, _, 'A'),
    sub_atom(N, 1, _, 0, D),
    atom_number(D, _).

%!  rules_relation(+Rules, +Name, +Arity, +Args, -Reply) is det.
%
%   Reply is the argument names of the declared relation Name/Arity; an error if it
%   is not declared.

rules_relation(R, Name, Arity, _, Names) :-
    (   R:relation(Name, Arity, Names)
    ->  true
    ;   octopus_error(kb, "~w/~w is not a relation declared by engine.rules()",
                      [Name, Arity])
    ).


                 /*******************************
                 *        INSTALLATION         *
                 *******************************/

%!  rules_install(+Rules, +KB, +Store, +Id, +Spec, +Limits, +Initial, -Reply) is det.
%
%   Compile Spec and install it as watch or invariant Id. Spec is one of
%
%     - [goal, Text, Bindings]: a goal (trusted application text) whose named
%       variables not bound by Bindings ([Name, Value] lists, values as data) are
%       the row;
%     - [relation, Name, Args]: the declared relation Name, Args a list of values
%       (@(none) for "any"), the row being all arguments;
%     - [invariant, Name, Text]: clauses of one head (any name); a row of that
%       relation is a violation.
%
%   Limits is [InstallInferences, ChangeInferences, MaxRows]. Initial is @(true) to
%   compute the current rows (a watch delivering them first; always for an
%   invariant, which must have none). Reply is [Names, Rows]: the row's variable
%   names, and the current rows (lists of exported values, in standard order of
%   terms) or [] when not asked; or _{violated: RowText} for an invariant that
%   already has a row (nothing is installed then).

rules_install(R, KB, M, Id, Spec, [InstallInf, ChangeInf, MaxRows], Initial, Reply) :-
    must_be(integer, Id),
    spec_goal(Spec, R, KB, Kind, Head, Names, Variants),
    catch(compile_watch(R, KB, Id, Kind, Names, Head, Variants, ChangeInf),
          E, ( forget(R, Id), throw(E) )),
    (   ( Initial == @(true) ; Kind = invariant(_) )
    ->  catch(initial_rows(R, M, Id, InstallInf, MaxRows, Rows0),
              E, ( forget(R, Id), throw(E) )),
        (   Kind = invariant(_), Rows0 = [First|_]
        ->  forget(R, Id),
            row_text(First, Names, Text),
            Reply = _{violated: Text}
        ;   maplist(export_row, Rows0, Rows),
            Reply = [Names, Rows]
        )
    ;   Reply = [Names, []]
    ),
    (   Reply = [_, _], \+ M:'$rules'(R)
    ->  assertz(M:'$rules'(R))
    ;   true
    ).

%   spec_goal(+Spec, +Rules, +KB, -Kind, -Head, -Names, -Variants)

spec_goal([goal, Text, Bindings], _, KB, watch, Head, Names, Variants) :-
    parse_goal(KB, Text, Goal, VNs),
    maplist(bind_input(VNs), Bindings),
    include(output_var(Bindings), VNs, Outs),
    pairs_keys_values_eq(Outs, Names, Vars),
    Head =.. [row|Vars],
    variants(KB, [], Head, Goal, Variants).
spec_goal([relation, Name, Args0], R, KB, watch, Head, Names, Variants) :-
    must_be(atom, Name),
    must_be(list, Args0),
    relation_arity(R, Name, Args0, Arity, Args1),
    rules_relation(R, Name, Arity, [], Names),
    maplist(import_arg, Args1, Args),
    Goal =.. [Name|Args],
    Head =.. [row|Args],
    variants(KB, [], Head, Goal, Variants).
spec_goal([invariant, InvName, Text], _, KB, invariant(InvName), Head, Names, Variants) :-
    must_be(atom, InvName),
    read_clauses(KB, Text, Clauses),
    (   Clauses = [(H0 :- _)-VNs0|_]
    ->  functor(H0, F, A),
        (   member((H :- _)-_, Clauses), \+ functor(H, F, A)
        ->  octopus_error(kb, "invariant ~w: every clause must have the head ~w/~w",
                          [InvName, F, A])
        ;   true
        ),
        functor(Head0, F, A),
        Head0 =.. [_|Vars],
        Head =.. [row|Vars],
        H0 =.. [_|Args0],
        arg_names(Args0, VNs0, 1, Names),
        findall(Head-Pos-Negs,
                ( member((Head0 :- Body)-_, Clauses),
                  variant(ctx(KB, [], [F/A]), Body, Pos, Negs)
                ),
                Variants0),
        check_variants(Variants0, Variants)
    ;   octopus_error(kb, "invariant ~w: no clause (write violation(...) :- ...)",
                      [InvName])
    ).

%   relation_arity(+R, +Name, +Args0, -Arity, -Args): no arguments given stand for
%   "any" at every position of the one relation declared with that name.

relation_arity(R, Name, [], Arity, Args) :-
    \+ R:relation(Name, 0, _),
    findall(A, R:relation(Name, A, _), [Arity]),
    !,
    length(Args, Arity),
    maplist(=(@(none)), Args).
relation_arity(_, _, Args, Arity, Args) :-
    length(Args, Arity).

pairs_keys_values_eq([], [], []).
pairs_keys_values_eq([N=V|T], [N|Ns], [V|Vs]) :- pairs_keys_values_eq(T, Ns, Vs).

parse_goal(KB, Text, Goal, VNs) :-
    catch(term_string(Goal, Text, [variable_names(VNs), module(KB)]),
          error(syntax_error(What), _),
          octopus_error(kb, "syntax error in rule goal: ~w", [What])),
    (   callable(Goal)
    ->  true
    ;   octopus_error(kb, "not a goal: ~q", [Text])
    ).

read_clauses(KB, Text, Clauses) :-
    setup_call_cleanup(open_string(Text, In), read_clauses_(In, KB, Clauses), close(In)).

read_clauses_(In, KB, Clauses) :-
    catch(read_term(In, T, [module(KB), variable_names(VNs), syntax_errors(error)]),
          error(syntax_error(What), _),
          octopus_error(kb, "syntax error in invariant: ~w", [What])),
    (   T == end_of_file
    ->  Clauses = []
    ;   T = (:- _)
    ->  octopus_error(kb, "an invariant has no directives: ~q", [T])
    ;   (   T = (H :- B) -> true ; H = T, B = true ),
        (   callable(H) -> true ; octopus_error(kb, "not a clause: ~q", [T]) ),
        Clauses = [(H :- B)-VNs|Rest],
        read_clauses_(In, KB, Rest)
    ).

bind_input(VNs, [Name, Value0]) :-
    import_arg(Value0, Value),
    (   memberchk(Name=Var, VNs)
    ->  Var = Value
    ;   octopus_error(kb, "binding ~w does not occur in the goal", [Name])
    ).

output_var(Bindings, Name=_) :-
    \+ sub_atom(Name, 0, _, _, '_'),
    \+ memberchk([Name, _], Bindings).

%   import_arg(+Data, -Value): a value from Python as the view has it. A str arrives
%   as an atom (an identifier), [Text] as an identifier too, @(none) as "any".

import_arg(@(none), _) :- !.
import_arg([A], V) :- !, ( atom(A) -> V = A ; atom_string(V, A) ).
import_arg(V, V).

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
    functor(G, Name, Arity),
    functor(Spec, Name, Arity),
    predicate_property(system:Spec, meta_predicate(Spec)),
    arg(I, Spec, S),
    ( integer(S) ; S == (^) ),
    arg(I, G, Sub0),
    strip_carets(Sub0, Sub),
    nonvar(Sub).

%   meta_var(+Goal): a goal argument of Goal is a variable (call(G), findall(X, G, L)).

meta_var(G) :-
    functor(G, Name, Arity),
    functor(Spec, Name, Arity),
    predicate_property(system:Spec, meta_predicate(Spec)),
    arg(I, Spec, S),
    ( integer(S) ; S == (^) ),
    arg(I, G, Sub0),
    strip_carets(Sub0, Sub),
    var(Sub),
    !.

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
                 *         COMPILATION         *
                 *******************************/

%   compile_watch(+R, +KB, +Id, +Kind, +Names, +Head, +Variants, +ChangeInf)
%
%   Assert the clauses of watch Id: scan/3 (every row), check/3 (is this row true?),
%   gen/5 and its prefilter facts (one generator per literal reading a record).

compile_watch(R, KB, Id, Kind, Names, _, Variants, ChangeInf) :-
    forall(member(V, Variants), check_safe(V)),
    assertz(R:watch(Id, Kind, Names)),
    assertz(R:limit(Id, ChangeInf)),
    forall(member(H-Pos-Negs, Variants),
           compile_variant(R, KB, Id, H, Pos, Negs)).

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

%   compile_variant(+R, +KB, +Id, +H, +Pos, +Negs)
%
%   The clauses of one variant, each planned for what is bound when it runs and
%   compiled twice where it must read both states: once against the store as it is
%   (plain(M), the store's module M known when compiling, so record reads are direct
%   calls), once with the changed record's overlay (over(M, On, Od), On and Od
%   arguments of the clause): scan/2 (every row now), check1/2 and check0/4 (is this
%   row true after, before the change), gen1/5 and gen0/7 (a generator).

compile_variant(R, KB, Id, H, Pos, Negs) :-
    R:store(M),
    negs_as_literals(Negs, NegLits),
    append(Pos, NegLits, All),
    plan(All, [], H, KB, plain(M), ScanBody),       % every row: nothing bound
    assertz(R:(scan(Id, H) :- ScanBody)),
    term_variables(H, HVs),
    plan(All, HVs, H, KB, plain(M), Check1),        % one row: the row bound
    assertz(R:(check1(Id, H) :- Check1)),
    plan(All, HVs, H, KB, over(M, On, Od), Check0),
    assertz(R:(check0(Id, On, Od, H) :- Check0)),
    forall(generator(Pos, Negs, Kind, Lit, Rest),
           compile_generator(R, KB, M, Id, H, Kind, Lit, Rest)).

negs_as_literals([], []).
negs_as_literals([N|Ns], [neg(N)|Ls]) :- negs_as_literals(Ns, Ls).

%   generator(+Pos, +Negs, -Kind, -Lit, -Rest) is nondet: Lit, a literal reading a
%   record, and the other literals its generator evaluates: for a positive Lit (Kind
%   pos) the rest of the body, so the rows it finds are true; for Lit inside a
%   negation (Kind neg) the positive literals and the rest of that negation (made
%   positive; the other negations are left out: the candidates only need to include
%   every row that may have changed).

generator(Pos, Negs, pos, L, Rest) :-
    nth0(_, Pos, L, Rest0),
    L = view(_),
    negs_as_literals(Negs, NL),
    append(Rest0, NL, Rest).
generator(Pos, Negs, neg, L, Rest) :-
    member(Neg, Negs),
    nth0(_, Neg, L, NegRest),
    L = view(_),
    append(Pos, NegRest, Rest).

compile_generator(R, KB, M, Id, H, Kind, view(Lit), Rest) :-
    lit_name(Lit, NameArg),
    term_variables(NameArg, Named),         % the name is given: bound when it runs
    term_variables(Lit, Bound0),            % the literal runs first: all bound after it
    flag(octopus_rules_gen, G, G + 1),
    plan(Rest, Bound0, H, KB, plain(M), Rest1),
    view_goal(Lit, plain(M), Named, First1),
    conj(First1, Rest1, Body1),
    assertz(R:(gen1(Id, G, NameArg, H, Kind) :- Body1)),
    plan(Rest, Bound0, H, KB, over(M, On, Od), Rest0),
    view_goal(Lit, over(M, On, Od), Named, First0),
    conj(First0, Rest0, Body0),
    assertz(R:(gen0(Id, G, NameArg, On, Od, H, Kind) :- Body0)),
    (   Lit = attr(_, K, _), atom(K)
    ->  assertz(R:gen_key(K, Id, G)),
        (   R:watched_key(K)
        ->  true
        ;   assertz(R:watched_key(K)),
            index_build(M, K)
        )
    ;   Lit = attr(_, _, _)
    ->  assertz(R:gen_anykey(Id, G))
    ;   assertz(R:gen_exists(Id, G))
    ).

lit_name(record(X), X).
lit_name(attr(X, _, _), X).

%   plan(+Lits, +Bound, +Head, +KB, +S, -Body)
%
%   Order Lits for evaluation given the variables Bound: ready builtins and
%   negations first (they only filter), then view literals whose record is known,
%   then attr/3 with a known key and value (an index lookup), knowledge-base goals
%   with a bound first argument, attr/3 with a known key, other knowledge-base goals,
%   and last the scans; the order written among equals. S is the state the view
%   literals read (view_goal/4).

plan([], _, _, _, _, true) :- !.
plan(Lits, Bound, Head, KB, S, Body) :-
    pick(Lits, Bound, Head, L, Rest),
    !,
    literal_goal(L, Bound, KB, S, G),
    (   L = neg(_)
    ->  Bound1 = Bound                   % a negation binds nothing
    ;   term_variables(L, Vs),
        append(Vs, Bound, Bound1)
    ),
    plan(Rest, Bound1, Head, KB, S, Body0),
    conj(G, Body0, Body).
plan([L|_], _, _, _, _, _) :-
    literal_text(L, Text),
    octopus_error(kb, "unsafe rule: ~s cannot run: its arguments are never bound", [Text]).

conj(G, true, G) :- !.
conj(G, B, (G, B)).

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

literal_goal(bi(G), _, _, _, Goal) :- !,
    (   arithmetic(G), G \= (_ is _), simple_comparison(G, Tests)
    ->  conj_list(Tests, G, Goal)             % number(V) tests, then the comparison
    ;   arithmetic(G)
    ->  Goal = octopus_rules:arith(G)
    ;   G = '$link'(A, B)
    ->  Goal = (A = B)
    ;   Goal = G
    ).
literal_goal(kb(G), _, KB, _, KB:G) :- !.
literal_goal(view(L), Bound, _, S, Goal) :- !,
    view_goal(L, S, Bound, Goal).
literal_goal(neg(Lits), Bound, KB, S, \+ Body) :-
    plan(Lits, Bound, Lits, KB, S, Body).

%   view_goal(+Literal, +State, +Bound, -Code)
%
%   The code of a view literal in State, given the variables Bound before it, inlined
%   into the compiled clause (the store's module is known, so its facts are called
%   directly). plain(M) reads the store; over(M, On, Od) reads it with record On
%   replaced by Od (a dict, or none: absent). A value known when compiling is matched
%   in its stored form (stored_form/3); a variable key falls back to v_attr/4.

view_goal(record(X), plain(M), _, octopus_rules:rec_(M, X, _)) :- !.
view_goal(record(X), over(M, On, Od), Bound, Code) :- !,
    (   bound_term(X, Bound)
    ->  Code = ( X == On -> Od \== none ; octopus_rules:rec_(M, X, _) )
    ;   Code = ( octopus_rules:rec_(M, X, _), X \== On ; Od \== none, X = On )
    ).
view_goal(attr(X, K, V), S, Bound, Code) :-
    atom(K), !,
    (   nonvar(V), \+ compound_value(V)
    ->  (   stored_form(V, Stored, Hash)
        ->  Match = get_dict(K, D, Stored),
            Index = Hash
        ;   Match = fail, Index = _
        )
    ;   Match = ( get_dict(K, D, Value), octopus_rules:view_value(Value, V) ),
        (   bound_term(V, Bound)
        ->  Index = hash(V)
        ;   Index = _
        )
    ),
    (   bound_term(X, Bound)
    ->  (   S = plain(M)
        ->  Code = ( octopus_rules:rec_(M, X, D), Match )
        ;   S = over(M, On, Od),
            Code = ( ( X == On -> Od \== none, D = Od ; octopus_rules:rec_(M, X, D) ),
                     Match )
        )
    ;   index_code(Index, M0, K, X, Entries),
        (   S = plain(M)
        ->  M0 = M,
            Code = ( Entries, octopus_rules:rec_(M, X, D), Match )
        ;   S = over(M, On, Od),
            M0 = M,
            Code = ( Entries, X \== On, octopus_rules:rec_(M, X, D), Match
                   ; Od \== none, X = On, D = Od, Match
                   )
        )
    ).
view_goal(attr(X, K, V), plain(M), _, octopus_rules:v_attr(s(M, [], none), X, K, V)).
view_goal(attr(X, K, V), over(M, On, Od), _, octopus_rules:v_attr(s(M, On, Od), X, K, V)).

%   index_code(+Index, +M, +K, ?X, -Code): the names in key K's index table, all of
%   them or those with the value's hash (computed now, or when the code runs).

index_code(Index, M, K, X, Code) :-
    (   var(Index)
    ->  Code = octopus_rules:table_entry(M, K, _, X)
    ;   Index = hash(V)
    ->  Code = ( octopus_rules:view_hash(V, H), octopus_rules:table_entry(M, K, H, X) )
    ;   Code = octopus_rules:table_entry(M, K, Index, X)
    ).

%   table_entry(+M, +K, ?Hash, -Name): a name (an atom) whose record has key K (with a
%   value of index hash Hash, when bound). From key K's index ('$rx'/3 in the store
%   module) when the installed rules read K; otherwise, as for a knowledge-base goal
%   that reads a key no rule does, every record is visited (the index exists only for
%   the keys of installed rules, so a store without rules pays nothing for it).

table_entry(M, K, H, X) :-
    (   M:'$rx_key'(K)
    ->  M:'$rx'(H, K, X)
    ;   M:rec(S, _, D),
        get_dict(K, D, V),
        (   var(H)
        ->  true
        ;   index_hash(V, H0),
            H0 == H
        ),
        atom_string(X, S)
    ).

%   index_build(+M, +K): the index of key K, when the first installed rule reads it:
%   '$rx'(Hash, K, Name) for every record that has K (Hash that of its value), kept
%   by index_change/4 in the transaction of every write from then on.

index_build(M, K) :-
    (   M:'$rx_key'(K)
    ->  true
    ;   forall(( M:rec(S, _, D), get_dict(K, D, V) ),
               ( index_hash(V, H),
                 atom_string(A, S),
                 assertz(M:'$rx'(H, K, A))
               )),
        assertz(M:'$rx_key'(K))
    ).

%   index_drop(+M, +K): forget key K's index (no installed rule reads K any more).

index_drop(M, K) :-
    retractall(M:'$rx_key'(K)),
    retractall(M:'$rx'(_, K, _)).

%   index_change(+M, +Name, +Old, +New): the indexes after record Name went from Old
%   to New (dicts, or none).

index_change(M, Name, Old, New) :-
    forall(M:'$rx_key'(K),
           (   value_of(K, Old, V0),
               value_of(K, New, V1),
               (   V0 == V1
               ->  true
               ;   (   V0 == none
                   ->  true
                   ;   index_hash(V0, H0),
                       ignore(retract(M:'$rx'(H0, K, Name)))
                   ),
                   (   V1 == none
                   ->  true
                   ;   index_hash(V1, H1),
                       assertz(M:'$rx'(H1, K, Name))
                   )
               )
           )).

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

%   arith(+Goal): an arithmetic comparison or is/2, false (not an error) when an
%   argument is not a number.

arith(G) :-
    G =.. [_|Args],
    (   G = (_ is _)
    ->  Args = [_, Expr],
        numeric(Expr)
    ;   maplist(numeric, Args)
    ),
    catch(G, error(E, _), arith_error(E)).

%   numeric(+Expr): every leaf of Expr is a number (SWI-Prolog would evaluate a
%   one-character string as its code: "9" > 1 holds there; here it is false).

numeric(X) :- number(X), !.
numeric(X) :- compound(X), !, X =.. [_|Args], maplist(numeric, Args).
numeric(pi).
numeric(e).

arith_error(type_error(_, _)) :- !, fail.
arith_error(evaluation_error(_)) :- !, fail.
arith_error(E) :- throw(error(E, _)).


                 /*******************************
                 *         EVALUATION          *
                 *******************************/

%   initial_rows(+R, +Store, +Id, +Inferences, +MaxRows, -Rows)
%
%   Every row of watch Id now, sorted, within Inferences; an error past MaxRows.

initial_rows(R, _, Id, Inferences, MaxRows, Rows) :-
    Take is MaxRows + 1,
    limited(findall(H, limit(Take, R:scan(Id, H)), Hs), Inferences, Outcome),
    (   Outcome == exceeded
    ->  octopus_error(kb, "the rule needed more than ~D inferences to compute its \c
                           rows (a rule that loops or explodes?)", [Inferences])
    ;   Outcome = error(E)
    ->  throw(E)
    ;   true
    ),
    sort(Hs, Rows),
    length(Rows, N),
    (   N > MaxRows
    ->  octopus_error(kb, "the relation has more than ~D rows", [MaxRows])
    ;   true
    ).

%   limited(:Goal, +Inferences, -Outcome): Goal once; Outcome is done, exceeded
%   when it took more than Inferences (or ran out of stack), or error(E) when it
%   raised E.

limited(Goal, Inferences, Outcome) :-
    catch(call_with_inference_limit(Goal, Inferences, Result), E, true),
    (   var(E)
    ->  (   Result == inference_limit_exceeded
        ->  Outcome = exceeded
        ;   Outcome = done
        )
    ;   E = error(resource_error(_), _)
    ->  Outcome = exceeded
    ;   Outcome = error(E)
    ).

%!  rules_change(+Store, +Name, +Old, +New, +Rev, +Forced, +Rows0, -Rows) is det.
%
%   Called by the store inside the transaction of a write, after it: record Name
%   went from Old to New (dicts, or none), at revision Rev. Rows is Rows0 preceded
%   (newest first: the store reverses the list once) by [Rev, Id, Kind, Row] for
%   every row of a watch that appears (Kind set) or disappears (del), and [Rev, Id,
%   removed, Reason] for a watch that exceeded its limit on this change (it is
%   removed). An invariant that gains a row throws octopus_violation(Name, RowText),
%   unless Forced is @(true) (a session's end, which cannot be refused): then [Rev,
%   Id, violated, RowText] is added.
%
%   The watches concerned are evaluated under one inference limit, the sum of
%   theirs; only if that is exceeded (or something raises) are they evaluated again
%   one by one, each under its own, to find which one to remove or refuse.

rules_change(M, Name, Old, New, Rev, Forced, Rows0, Rows) :-
    (   M:'$rules'(R)
    ->  (   Old == New
        ->  Rows = Rows0
        ;   index_change(M, Name, Old, New),
            findall(Id-G, relevant(R, Old, New, Id, G), IGs0),
            (   IGs0 == []
            ->  Rows = Rows0
            ;   sort(IGs0, IGs),
                group_pairs_by_key(IGs, Groups),
                evaluate_all(R, M, Name, Old, Rev, Forced, Groups, Rows0, Rows)
            )
        )
    ;   Rows = Rows0
    ).

%   relevant(+R, +Old, +New, -Id, -G) is nondet: generator G of watch Id reads what
%   the change changed: a key some generator reads whose value differs (present in
%   one only, or different), the record's existence, or (a generator reading any
%   key) anything. Only the keys generators read are compared, so the cost does not
%   grow with the size of the record.

relevant(R, Old, New, Id, G) :-
    R:watched_key(K),
    value_of(K, Old, V0),
    value_of(K, New, V1),
    V0 \== V1,
    R:gen_key(K, Id, G).
relevant(R, _, _, Id, G) :-
    R:gen_anykey(Id, G).
relevant(R, Old, New, Id, G) :-
    ( Old == none ; New == none ),
    R:gen_exists(Id, G).

value_of(_, none, none) :- !.
value_of(K, D, V) :- ( get_dict(K, D, V0) -> V = V0 ; V = none ).

evaluate_all(R, M, Name, Old, Rev, Forced, Groups, Rows0, Rows) :-
    aggregate_all(sum(I), ( member(Id-_, Groups), R:limit(Id, I) ), Budget),
    catch(call_with_inference_limit(
              foldl(evaluate_one(R, M, Name, Old, Rev, Forced), Groups, Rows0, Rows1),
              Budget, Result),
          E, true),
    (   var(E), Result \== inference_limit_exceeded
    ->  Rows = Rows1
    ;   nonvar(E), E = octopus_violation(_, _)
    ->  throw(E)
    ;   foldl(evaluate(R, M, Name, Old, Rev, Forced), Groups, Rows0, Rows)
    ).

%   evaluate_one(+R, +M, +Name, +Old, +Rev, +Forced, +Id-Gens, +Rows0, -Rows): the
%   rows of watch Id (no limit of its own: evaluate_all/9 has one).

evaluate_one(R, _, Name, Old, Rev, Forced, Id-Gs, Rows0, Rows) :-
    R:watch(Id, Kind, Names),
    (   Kind = invariant(_) -> Need = appear ; Need = both ),
    delta(R, Id, Gs, Name, Old, Need, Appear, Disappear),
    outcome(Kind, Names, Id, Rev, Forced, Appear, Disappear, Rows0, Rows).

%   evaluate(..., +Id-Gens, +Rows0, -Rows): the same, under Id's own limit; a watch
%   over it is removed, an invariant refuses the change.

evaluate(R, _, Name, Old, Rev, Forced, Id-Gs, Rows0, Rows) :-
    (   R:watch(Id, Kind, Names),
        R:limit(Id, Inferences)
    ->  (   Kind = invariant(_) -> Need = appear ; Need = both ),
        limited(delta(R, Id, Gs, Name, Old, Need, Appear, Disappear), Inferences,
                Outcome),
        (   Outcome \== done
        ->  failed(R, Id, Kind, Outcome, Inferences, Rev, Forced, Rows0, Rows)
        ;   outcome(Kind, Names, Id, Rev, Forced, Appear, Disappear, Rows0, Rows)
        )
    ;   Rows = Rows0
    ).

outcome(invariant(InvName), Names, Id, Rev, Forced, Appear, _, Rows0, Rows) :- !,
    (   Appear = [Row|_]
    ->  row_text(Row, Names, Text),
        (   Forced == @(true)
        ->  Rows = [[Rev, Id, violated, Text]|Rows0]
        ;   throw(octopus_violation(InvName, Text))
        )
    ;   Rows = Rows0
    ).
outcome(watch, _, Id, Rev, _, Appear, Disappear, Rows0, Rows) :-
    foldl(row_out(Rev, Id, del), Disappear, Rows0, Rows1),
    foldl(row_out(Rev, Id, set), Appear, Rows1, Rows).

%   failed(+R, +Id, +Kind, +Outcome, +Inferences, +Rev, +Forced, +Rows0, -Rows)
%
%   A watch or invariant whose evaluation on a change exceeded its limit or raised:
%   a watch is removed (the change goes on); an invariant refuses the change (it is
%   never given up silently), unless the change is forced.

failed(R, Id, Kind, Outcome, Inferences, Rev, Forced, Rows0, Rows) :-
    failure_text(Outcome, Inferences, Reason),
    (   Kind == watch
    ->  forget(R, Id),
        Rows = [[Rev, Id, removed, Reason]|Rows0]
    ;   Forced == @(true)
    ->  Rows = [[Rev, Id, violated, Reason]|Rows0]
    ;   Kind = invariant(Name),
        throw(octopus_unchecked(Name, Reason))
    ).

failure_text(exceeded, Inferences, Text) :- !,
    format(string(Text), "its rules needed more than ~D inferences on one change",
           [Inferences]).
failure_text(error(E), _, Text) :-
    describe_error(E, [_, Message]),
    format(string(Text), "its rules raised an error: ~s", [Message]).

row_out(Rev, Id, Kind, Row, Rows0, Rows) :-
    export_row(Row, Values),
    Rows = [[Rev, Id, Kind, Values]|Rows0].

%   delta(+R, +Id, +Gens, +Name, +Old, +Need, -Appear, -Disappear)
%
%   The candidates of the generators Gens after the change (gen1) and before it
%   (gen0: the store with record Name as Old), each checked: a candidate found by a
%   positive generator in a state is true there without a check, so a row found by
%   positive generators in both states (the usual update that changes nothing) costs
%   no check at all. Need is both, or appear (an invariant): a row that appears has
%   a derivation after the change through Name, or a negation that held before it
%   through Name and no longer does, so the positive generators run after the change
%   and the negative ones before it only.

delta(R, Id, Gs, Name, Old, Need, Appear, Disappear) :-
    findall(H-Known,
            ( member(G, Gs),
              (   Need == both
              ->  (   R:gen0(Id, G, Name, Name, Old, H, Kind), known(Kind, 0, Known)
                  ;   R:gen1(Id, G, Name, H, Kind), known(Kind, 1, Known)
                  )
              ;   (   R:gen1(Id, G, Name, H, pos), Known = 1
                  ;   R:gen0(Id, G, Name, Name, Old, H, neg), Known = none
                  )
              ) ),
            Found),
    (   Found == []
    ->  Appear = [],
        Disappear = []
    ;   msort(Found, Sorted),
        group_pairs_by_key(Sorted, Candidates),
        partition_rows(Candidates, R, Id, Name, Old, Appear, Disappear)
    ).

known(pos, State, State).
known(neg, _, none).

partition_rows([], _, _, _, _, [], []).
partition_rows([H-Known|Hs], R, Id, Name, Old, Appear, Disappear) :-
    (   memberchk(1, Known) -> In1 = true
    ;   \+ \+ R:check1(Id, H) -> In1 = true
    ;   In1 = false
    ),
    (   memberchk(0, Known) -> In0 = true
    ;   \+ \+ R:check0(Id, Name, Old, H) -> In0 = true
    ;   In0 = false
    ),
    (   In1 == true, In0 == false
    ->  Appear = [H|Appear1], Disappear = Disappear1
    ;   In0 == true, In1 == false
    ->  Appear = Appear1, Disappear = [H|Disappear1]
    ;   Appear = Appear1, Disappear = Disappear1
    ),
    partition_rows(Hs, R, Id, Name, Old, Appear1, Disappear1).

%!  rules_remove(+Rules, +Store, +Id, -Reply) is det.
%
%   Reply is @(true) if Id was installed.

rules_remove(R, M, Id, Reply) :-
    (   R:watch(Id, _, _)
    ->  forget(R, Id),
        Reply = @(true)
    ;   Reply = @(false)
    ),
    (   R:watch(_, _, _)
    ->  true
    ;   retractall(M:'$rules'(_))
    ).

forget(R, Id) :-
    retractall(R:watch(Id, _, _)),
    retractall(R:limit(Id, _)),
    retractall(R:gen0(Id, _, _, _, _, _, _)),
    retractall(R:gen1(Id, _, _, _, _)),
    retractall(R:check0(Id, _, _, _)),
    retractall(R:check1(Id, _)),
    retractall(R:scan(Id, _)),
    retractall(R:gen_key(_, Id, _)),
    R:store(M),
    forall(( R:watched_key(K), \+ R:gen_key(K, _, _) ),
           ( retract(R:watched_key(K)),
             index_drop(M, K)
           )),
    retractall(R:gen_anykey(Id, _)),
    retractall(R:gen_exists(Id, _)).


                 /*******************************
                 *      ROWS ON THE WAY OUT    *
                 *******************************/

%   export_row(+Row, -Values): row(V1, ..., Vn) as a list of plain data janus converts
%   without tuples: an atom (an identifier) as [Text], strings and numbers as they
%   are, @(true)/@(false), a list as _{list: Values}, any other term as
%   _{text: QuotedText}.

export_row(Row, Values) :-
    Row =.. [_|Args],
    maplist(export_value, Args, Values).

export_value(V, [S]) :- atom(V), !, atom_string(V, S).
export_value(V, V) :- number(V), !.
export_value(V, V) :- string(V), !.
export_value(@(B), @(B)) :- ( B == true ; B == false ), !.
export_value(V, _{list: E}) :- is_list(V), !, maplist(export_value, V, E).
export_value(V, _{text: T}) :- format(string(T), "~q", [V]).

%   row_text(+Row, +Names, -Text): "Dev = 'hw.pci.device.3', N = 2".

row_text(Row, Names, Text) :-
    Row =.. [_|Args],
    maplist([N, A, S]>>format(string(S), "~w = ~q", [N, A]), Names, Args, Parts),
    atomic_list_concat(Parts, ', ', Text0),
    atom_string(Text0, Text).


                 /*******************************
                 *         EXPLANATION         *
                 *******************************/

%!  rules_explain(+KB, +Store, +Text, +Bindings, +Limits, -Reply) is det.
%
%   Why is Text (a goal over the view) false, or what makes it true? Reply is a list
%   of [Literal, Status, Solutions]: for each literal of the goal's first variant,
%   in the order written, whether the conjunction up to it has solutions, and how
%   many (at most 100 counted). The first literal whose status is fail is what the
%   goal waits for.

rules_explain(KB, M, Text, Bindings, [Inferences|_], Reply) :-
    parse_goal(KB, Text, Goal, VNs),
    maplist(bind_input(VNs), Bindings),
    (   variant(ctx(KB, [], []), Goal, Pos, Negs)
    ->  true
    ;   Pos = [], Negs = []
    ),
    negs_as_literals(Negs, NL),
    append(Pos, NL, Lits),
    explain_prefix(Lits, KB, plain(M), [], Inferences, Reply).

explain_prefix([], _, _, _, _, []).
explain_prefix([L|Ls], KB, S, Done, Inferences, [[Text, Status, Count]|Rest]) :-
    literal_text(L, Text),
    append(Done, [L], Done1),
    Prefix = Done1,
    (   catch(literal_goals(Prefix, KB, S, Goal), _, fail)
    ->  limited(aggregate_all(count, limit(100, Goal), Count0), Inferences, Outcome),
        (   Outcome == exceeded
        ->  Status = unknown, Count = -1
        ;   Count0 > 0
        ->  Status = ok, Count = Count0
        ;   Status = fail, Count = 0
        )
    ;   Status = unknown, Count = -1
    ),
    (   Status == fail
    ->  Rest = []
    ;   explain_prefix(Ls, KB, S, Done1, Inferences, Rest)
    ).

literal_goals(Lits, KB, S, Goal) :-
    literal_goals(Lits, [], KB, S, Goal).

literal_goals([], _, _, _, true).
literal_goals([L|Ls], Bound, KB, S, (G, Gs)) :-
    literal_goal(L, Bound, KB, S, G),
    term_variables(L, Vs),
    append(Vs, Bound, Bound1),
    literal_goals(Ls, Bound1, KB, S, Gs).


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
%   reads the store it was made for (its state is fixed in the view's clause, and KB
%   code may not name octopus_rules itself: wall 3), and library(sandbox) cannot
%   prove that by itself, as v_record/2 and v_attr/4 read a module given as data.

:- multifile sandbox:safe_primitive/1.

sandbox:safe_primitive(octopus_rules:v_record(_, _)).
sandbox:safe_primitive(octopus_rules:v_attr(_, _, _, _)).
