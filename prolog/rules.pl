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

The API Python calls (octopus/adapter.py, PrologRules), over four modules by concern:

  - prolog/rules_view.pl:    the read-only view record/1 and attr/3 that every
                             knowledge base sees, and the rules' own index of the keys
                             they read;
  - prolog/rules_family.pl:  the rule family: unfolding a goal into variants, and
                             refusing what is not in the family (docs/rules.md);
  - prolog/rules_compile.pl: compiling a watch or invariant into clauses (every row,
                             one row, generators per literal reading a record);
  - prolog/rules_delta.pl:   keeping relations current: which generators a change
                             concerns, and the rows that appear or disappear.

Data lives in two modules per engine, named by the Python side from a counter:

  - Rules: store(Store), watch(Id, Kind, Names), limit(Id, Inferences),
    relation(Name, Arity, ArgNames), and the clauses and dispatch tables of
    prolog/rules_compile.pl and prolog/rules_delta.pl;
  - the store module holds '$rules'(Rules) while any watch or invariant exists: the
    store's writes call rules_change/8 only then.
*/

:- use_module(library(apply)).
:- use_module(library(error)).
:- use_module(library(lists)).
:- use_module(library(pairs)).
:- use_module(errors).
:- use_module(rules_view, [rules_view/3]).
:- use_module(rules_family).
:- use_module(rules_compile).
:- use_module(rules_delta).


                 /*******************************
                 *     RULES MODULE, RELATIONS *
                 *******************************/

%!  rules_create(+Rules, +Store, -Reply) is det.
%!  rules_destroy(+Rules, +Store, -Reply) is det.

rules_create(R, M, @(true)) :-
    must_be(atom, R),
    must_be(atom, M),
    retractall(R:store(_)),
    dynamic([ R:watch/3, R:gen0/6, R:gen1/6, R:check0/4, R:check1/2, R:scan/2,
              R:gen_key/3, R:watched_key/1, R:gen_anykey/2, R:store/1,
              R:gen_exists/2, R:limit/2, R:relation/3, R:change/4, R:cand_key/5, R:guard_key/4,
              R:cand_exists/4, R:cand_any/4, R:found/7, R:index_key/2, M:'$rules'/1 ]),
    assertz(R:store(M)),
    rebuild_dispatch(R).

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
    rebuild_dispatch(R),
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
