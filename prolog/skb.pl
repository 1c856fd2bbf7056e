:- module(octopus_skb,
          [ kb_create/3,              % +KB, +Aux, -Reply
            kb_destroy/3,             % +KB, +Aux, -Reply
            kb_load_begin/4,          % +KB, +Aux, +Source, -Reply
            kb_load_chunk/4,          % +KB, +Aux, +Max, -Reply
            kb_load_commit/4,         % +KB, +Aux, +Key, -Reply
            kb_load_abort/2,          % +Aux, -Reply
            kb_add_rows/4,            % +KB, +Functor, +Rows, -Reply
            kb_query/5                % +KB, +GoalText, +Bindings, +Limit, -Reply
          ]).

/** <module> The knowledge base (SKB): loading trusted facts and rules, answering goals

Every engine owns two modules, both named by the Python side from a counter (never
from user data):

  - KB:  the knowledge base proper. Every clause of every loaded file or text is
         asserted here, every directive runs here, every goal is called here. So a
         file that defines, asserts or retracts rec/3, key_index/2, seq/2, trig/2, ...
         defines its own KB:rec/3 and never touches a store module.
  - Aux: bookkeeping of loads: the open stream and the terms read so far
         ('$stream'/1, '$term'/1) and, per consulted file, the clause references
         of its last load ('$source'/2), so consulting a file again replaces it.

Loading is two-phase so that a file with a syntax error loads nothing:

  1. kb_load_begin/4 opens the source; kb_load_chunk/4 reads up to Max terms per
     call (the Python side draws a progress bar between calls), checks them and
     keeps them in Aux. Operator declarations take effect in KB as they are read,
     because later terms may need them to parse (they are not undone on error).
  2. kb_load_commit/4 adds all clauses and runs all directives in one transaction:
     an error in a directive leaves the knowledge base as it was.

A clause whose head is qualified with another module, and any clause or directive
that names one of Octopus' own modules (octopus_*) other than KB, is refused: the
knowledge base is trusted code, but it lives in its own module.

Every API predicate is det and returns its Reply (plain data that janus converts
without tuples); errors are raised as error(Formal, Context) terms, ours as
octopus_error(kb, Message) (prolog/errors.pl).
*/

:- use_module(library(apply)).
:- use_module(library(error)).
:- use_module(library(lists)).
:- use_module(library(pairs)).
:- use_module(errors).

%!  kb_create(+KB, +Aux, -Reply) is det.

kb_create(KB, Aux, @(true)) :-
    must_be(atom, KB),
    must_be(atom, Aux),
    dynamic([Aux:'$stream'/1, Aux:'$term'/1, Aux:'$source'/2]).

%!  kb_destroy(+KB, +Aux, -Reply) is det.
%
%   Retract every dynamic predicate of KB and forget all bookkeeping.

kb_destroy(KB, Aux, @(true)) :-
    abort_(Aux),
    retractall(Aux:'$source'(_, _)),
    forall(( current_predicate(KB:Name/Arity),
             functor(Head, Name, Arity),
             \+ predicate_property(KB:Head, imported_from(_)),
             predicate_property(KB:Head, dynamic)
           ),
           retractall(KB:Head)).

%!  kb_load_begin(+KB, +Aux, +Source, -Reply) is det.
%
%   Start a load from Source, file-Path or text-Text. Reply is the size of the
%   source (bytes of a file, characters of a text) for progress reporting.

kb_load_begin(_KB, Aux, Source, Size) :-
    abort_(Aux),
    open_source(Source, Stream, Size),
    assertz(Aux:'$stream'(Stream)).

open_source(file-Path, Stream, Size) :- !,
    must_be(atom, Path),
    size_file(Path, Size),
    open(Path, read, Stream, [encoding(utf8)]).
open_source(text-Text, Stream, Size) :- !,
    atom_length(Text, Size),
    open_string(Text, Stream).
open_source(Source, _, _) :-
    domain_error(kb_source, Source).

%!  kb_load_chunk(+KB, +Aux, +Max, -Reply) is det.
%
%   Read and check up to Max more terms. Reply is [Position, Done]: how far into the
%   source reading got (-1 at the end), and whether it reached the end. On an error
%   the load is abandoned (nothing was added) and the error is raised.

kb_load_chunk(KB, Aux, Max, Reply) :-
    catch(chunk_(KB, Aux, Max, Reply), E, ( abort_(Aux), throw(E) )).

chunk_(KB, Aux, Max, [Pos, Done]) :-
    (   Aux:'$stream'(Stream)
    ->  true
    ;   octopus_error(kb, "no load in progress")
    ),
    read_terms(KB, Aux, Stream, Max, Done),
    (   Done == @(true)
    ->  Pos = -1
    ;   byte_count(Stream, Pos)
    ).

read_terms(_, _, _, 0, @(false)) :- !.
read_terms(KB, Aux, Stream, N, Done) :-
    catch(read_term(Stream, Term,
                    [ module(KB), syntax_errors(error), term_position(TermPos) ]),
          error(syntax_error(What), Context),
          syntax_error(What, Context)),
    (   Term == end_of_file
    ->  Done = @(true)
    ;   stream_position_data(line_count, TermPos, Line),
        catch(expand(Term, Clause), E, at_line(Line, E)),
        keep(KB, Aux, Line, Clause),
        N1 is N - 1,
        read_terms(KB, Aux, Stream, N1, Done)
    ).

%   expand(+Term, -Clause)
%
%   Grammar rules are translated; other terms are taken as they are. User
%   term_expansion hooks are not run: they cost more than reading (measured 3x) and a
%   knowledge base has no need of them.

expand((Head --> Body), Clause) :- !,
    dcg_translate_rule((Head --> Body), Clause).
expand(Term, Term).

syntax_error(What, Context) :-
    (   Context = stream(_, Line, LinePos, _)
    ->  true
    ;   Context = file(_, Line, LinePos, _)
    ->  true
    ;   Line = '?', LinePos = '?'
    ),
    error_text(error(syntax_error(What), _), Text),
    octopus_error(kb, "syntax error at line ~w, column ~w: ~s; nothing was loaded",
                  [Line, LinePos, Text]).

%   error_text(+Error, -Text) is det.
%
%   The message of Error on one line (print_message/2's text).

error_text(E, Text) :-
    describe_error(E, [_, Text]).

at_line(Line, E) :-
    error_text(E, Msg0),
    octopus_error(kb, "line ~w: ~s", [Line, Msg0]).

%   keep(+KB, +Aux, +Line, +Clause)
%
%   Check one clause or directive and keep it for the commit. Operator declarations
%   run now (later terms may need them); a module declaration is ignored (the file
%   is loaded into KB whatever it calls itself), and so are discontiguous/1
%   declarations (asserted clauses may be discontiguous; declaring the predicate
%   would make it static before its clauses are asserted).

keep(KB, _, Line, Clause) :-
    foreign_module(KB, Clause, M),
    !,
    octopus_error(kb, "line ~w: the knowledge base may not name module ~q", [Line, M]).
keep(_, _, _, (:- module(_, _))) :- !.
keep(_, _, _, (:- discontiguous(_))) :- !.     % asserted clauses may be discontiguous
keep(KB, _, Line, (:- op(P, T, Ops))) :- !,
    catch(KB:op(P, T, Ops), E, at_line(Line, E)).
keep(_, Aux, _, (:- Directive)) :- !,
    assertz(Aux:'$term'(directive(Directive))).
keep(KB, Aux, Line, Clause) :-
    clause_head(Clause, Head),
    (   Head = M:_, M \== KB
    ->  octopus_error(kb, "line ~w: clause for another module: ~q", [Line, Head])
    ;   callable(Head)
    ->  assertz(Aux:'$term'(clause(Clause)))
    ;   octopus_error(kb, "line ~w: not a clause: ~q", [Line, Clause])
    ).

clause_head((Head :- _), Head) :- !.
clause_head(Head, Head).

%   foreign_module(+KB, +Term, -Module) is semidet.
%
%   Term names Module:_ where Module is one of Octopus' own modules other than KB.

foreign_module(KB, Term, M) :-
    sub_term(Sub, Term),
    compound(Sub),
    Sub = M:_,
    atom(M),
    M \== KB,
    sub_atom(M, 0, _, _, octopus_),
    !.

%!  kb_load_commit(+KB, +Aux, +Key, -Reply) is det.
%
%   Add every kept clause and run every kept directive, in one transaction. Key is
%   the absolute path of a consulted file (whose clauses from an earlier load are
%   removed in the same transaction) or @(none). Reply is the number of clauses.

kb_load_commit(KB, Aux, Key, Count) :-
    findall(T, Aux:'$term'(T), Terms),
    call_cleanup(transaction(commit_terms(KB, Aux, Key, Terms, Count)),
                 abort_(Aux)).

commit_terms(KB, Aux, Key, Terms, Count) :-
    (   Key == @(none)
    ->  true
    ;   unload_source(Aux, Key)
    ),
    foldl(add_term(KB), Terms, Refs, []),
    length(Refs, Count),
    (   Key == @(none)
    ->  true
    ;   assertz(Aux:'$source'(Key, Refs))
    ).

unload_source(Aux, Key) :-
    forall(retract(Aux:'$source'(Key, Refs)),
           forall(member(Ref, Refs), catch(erase(Ref), _, true))).

add_term(KB, clause(Clause), [Ref|Refs], Refs) :-
    catch(assertz(KB:Clause, Ref), E, directive_error(Clause, E)).
add_term(KB, directive(Goal), Refs, Refs) :-
    (   catch(KB:Goal, E, directive_error(Goal, E))
    ->  true
    ;   octopus_error(kb, "directive failed: ~q; nothing was loaded", [Goal])
    ).

directive_error(What, E) :-
    error_text(E, Msg0),
    octopus_error(kb, "~s (in ~q); nothing was loaded", [Msg0, What]).

%!  kb_load_abort(+Aux, -Reply) is det.
%
%   Abandon a load in progress (close its stream, drop the terms read so far).

kb_load_abort(Aux, @(true)) :-
    abort_(Aux).

abort_(Aux) :-
    forall(retract(Aux:'$stream'(S)), catch(close(S), _, true)),
    retractall(Aux:'$term'(_)).

%!  kb_add_rows(+KB, +Functor, +Rows, -Reply) is det.
%
%   Assert Functor(Args...) for every Args in Rows (lists of values, as janus passes
%   them), all or nothing. Reply is the number of facts added.

kb_add_rows(KB, Functor, Rows, N) :-
    transaction(add_rows_(KB, Functor, Rows, N)).

add_rows_(KB, Functor, Rows, N) :-
    must_be(atom, Functor),
    must_be(list, Rows),
    foldl(add_row(KB, Functor), Rows, 0, N).

add_row(KB, Functor, Row, N0, N) :-
    must_be(list, Row),
    Head =.. [Functor|Row],
    assertz(KB:Head),
    N is N0 + 1.

%!  kb_query(+KB, +GoalText, +Bindings, +Limit, -Solutions) is det.
%
%   Parse GoalText (trusted application text) in KB, bind the variables named in
%   Bindings (a list of Name-Value; values come as data), and collect the solutions
%   of KB:Goal, at most Limit of them (@(none): all). Solutions is a list of dicts,
%   one per solution, from the goal's other named variables (except those starting
%   with an underscore) to their values exported as plain data: numbers, atoms and
%   strings as they are, lists element-wise, unbound variables as @(none), a pair
%   K-V as _{'$pair': [K, V]}, a dict as _{'$dict': Dict} (so the Python side can
%   tell the two apart and rebuild a tuple and a dict), other compound terms as their
%   quoted text. Pairs do not travel as -(K, V): janus-swi 1.5.3 leaks the elements
%   of every tuple it makes.

kb_query(KB, Text, Bindings, Limit, Solutions) :-
    catch(term_string(Goal, Text, [variable_names(VNs), module(KB)]),
          error(syntax_error(What), _),
          ( error_text(error(syntax_error(What), _), M0),
            octopus_error(kb, "syntax error in goal: ~s", [M0]) )),
    (   callable(Goal)
    ->  true
    ;   octopus_error(kb, "not a goal: ~q", [Text])
    ),
    maplist(bind_input(VNs), Bindings),
    include(output_var(Bindings), VNs, Outs),
    (   Limit == @(none)
    ->  findall(Outs, KB:Goal, Sols)
    ;   findall(Outs, limit(Limit, KB:Goal), Sols)
    ),
    maplist(export_solution, Sols, Solutions).

bind_input(VNs, Name-Value) :-
    (   memberchk(Name=Var, VNs)
    ->  Var = Value
    ;   octopus_error(kb, "binding ~w does not occur in the goal", [Name])
    ).

output_var(Bindings, Name=_) :-
    \+ sub_atom(Name, 0, _, _, '_'),
    \+ memberchk(Name-_, Bindings).

export_solution(Outs, Solution) :-
    maplist(export_binding, Outs, Pairs),
    dict_pairs(Solution, solution, Pairs).

export_binding(Name=Value, Name-Exported) :-
    export_value(Value, Exported).

export_value(V, @(none)) :- var(V), !.
export_value(V, V) :- atomic(V), !.
export_value(@(B), @(B)) :- ( B == true ; B == false ; B == none ), !.
export_value(L, E) :- is_list(L), !, maplist(export_value, L, E).
export_value(K-V, _{'$pair': [KE, VE]}) :- !, export_value(K, KE), export_value(V, VE).
export_value(D, _{'$dict': E}) :- is_dict(D), !,
    dict_pairs(D, Tag, Pairs),
    pairs_keys_values(Pairs, Keys, Values),
    maplist(export_value, Values, EValues),
    pairs_keys_values(EPairs, Keys, EValues),
    dict_pairs(E, Tag, EPairs).
export_value(T, S) :-
    format(string(S), "~q", [T]).
