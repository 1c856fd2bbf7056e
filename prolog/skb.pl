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
         file that defines, asserts or retracts rec/3, attr/3, seq/2, trig/2, ...
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

Every API predicate is det and returns its Reply; errors come back as data,
`-('$error', kb, Message)`, never as exceptions.
*/

:- use_module(library(apply)).
:- use_module(library(error)).
:- use_module(library(lists)).
:- use_module(library(pairs)).
:- use_module(reply).

%!  kb_create(+KB, +Aux, -Reply) is det.

kb_create(KB, Aux, Reply) :-
    guarded(create_(KB, Aux), @(true), Reply).

create_(KB, Aux) :-
    must_be(atom, KB),
    must_be(atom, Aux),
    dynamic([Aux:'$stream'/1, Aux:'$term'/1, Aux:'$source'/2]).

%!  kb_destroy(+KB, +Aux, -Reply) is det.
%
%   Retract every dynamic predicate of KB and forget all bookkeeping.

kb_destroy(KB, Aux, Reply) :-
    guarded(destroy_(KB, Aux), @(true), Reply).

destroy_(KB, Aux) :-
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

kb_load_begin(_KB, Aux, Source, Reply) :-
    guarded(begin_(Aux, Source, Size), Size, Reply).

begin_(Aux, Source, Size) :-
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
%   Read and check up to Max more terms. Reply is Position-Done: how far into the
%   source reading got (-1 at the end), and whether it reached the end. On a syntax error
%   the load is abandoned (nothing was added) and the error is the reply.

kb_load_chunk(KB, Aux, Max, Reply) :-
    guarded(chunk_(KB, Aux, Max, R), R, Reply0),
    (   Reply0 = -('$error', _, _)
    ->  abort_(Aux)
    ;   true
    ),
    Reply = Reply0.

chunk_(KB, Aux, Max, Pos-Done) :-
    (   Aux:'$stream'(Stream)
    ->  true
    ;   throw(octopus(kb, "no load in progress"))
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
    message_to_codes(syntax_error(What), Text),
    format(string(Msg), "syntax error at line ~w, column ~w: ~s; nothing was loaded",
           [Line, LinePos, Text]),
    throw(octopus(kb, Msg)).

message_to_codes(syntax_error(What), Text) :-
    catch(( '$messages':translate_message(error(syntax_error(What), _), Lines, []),
            with_output_to(string(Text0), print_message_lines(current_output, '', Lines)),
            normalize_space(string(Text), Text0)
          ), _, format(string(Text), "~q", [What])).

at_line(Line, E) :-
    error_message(E, Msg0),
    format(string(Msg), "line ~w: ~s", [Line, Msg0]),
    throw(octopus(kb, Msg)).

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
    format(string(Msg), "line ~w: the knowledge base may not name module ~q", [Line, M]),
    throw(octopus(kb, Msg)).
keep(_, _, _, (:- module(_, _))) :- !.
keep(_, _, _, (:- discontiguous(_))) :- !.     % asserted clauses may be discontiguous
keep(KB, _, Line, (:- op(P, T, Ops))) :- !,
    catch(KB:op(P, T, Ops), E, at_line(Line, E)).
keep(_, Aux, _, (:- Directive)) :- !,
    assertz(Aux:'$term'(directive(Directive))).
keep(KB, Aux, Line, Clause) :-
    clause_head(Clause, Head),
    (   Head = M:_, M \== KB
    ->  format(string(Msg), "line ~w: clause for another module: ~q", [Line, Head]),
        throw(octopus(kb, Msg))
    ;   callable(Head)
    ->  assertz(Aux:'$term'(clause(Clause)))
    ;   format(string(Msg), "line ~w: not a clause: ~q", [Line, Clause]),
        throw(octopus(kb, Msg))
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

kb_load_commit(KB, Aux, Key, Reply) :-
    guarded(commit_(KB, Aux, Key, Count), Count, Reply),
    abort_(Aux).

commit_(KB, Aux, Key, Count) :-
    findall(T, Aux:'$term'(T), Terms),
    transaction(commit_terms(KB, Aux, Key, Terms, Count)).

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
    ;   format(string(Msg), "directive failed: ~q; nothing was loaded", [Goal]),
        throw(octopus(kb, Msg))
    ).

directive_error(What, E) :-
    error_message(E, Msg0),
    format(string(Msg), "~s (in ~q); nothing was loaded", [Msg0, What]),
    throw(octopus(kb, Msg)).

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

kb_add_rows(KB, Functor, Rows, Reply) :-
    guarded(transaction(add_rows_(KB, Functor, Rows, N)), N, Reply).

add_rows_(KB, Functor, Rows, N) :-
    must_be(atom, Functor),
    must_be(list, Rows),
    foldl(add_row(KB, Functor), Rows, 0, N).

add_row(KB, Functor, Row, N0, N) :-
    must_be(list, Row),
    Head =.. [Functor|Row],
    assertz(KB:Head),
    N is N0 + 1.

%!  kb_query(+KB, +GoalText, +Bindings, +Limit, -Reply) is det.
%
%   Parse GoalText (trusted application text) in KB, bind the variables named in
%   Bindings (a list of Name-Value; values come as data), and collect the solutions
%   of KB:Goal, at most Limit of them (@(none): all). Reply is a list of solutions,
%   each a list of Name-Value for the goal's other named variables, except those
%   starting with an underscore. Values are exported as plain data: numbers, atoms
%   and strings as they are, lists and dicts element-wise, K-V pairs as tuples,
%   unbound variables as @(none), other compound terms as their quoted text.

kb_query(KB, Text, Bindings, Limit, Reply) :-
    guarded(query_(KB, Text, Bindings, Limit, Sols), Sols, Reply).

query_(KB, Text, Bindings, Limit, Solutions) :-
    catch(term_string(Goal, Text, [variable_names(VNs), module(KB)]),
          error(syntax_error(What), _),
          ( message_to_codes(syntax_error(What), M0),
            format(string(Msg), "syntax error in goal: ~s", [M0]),
            throw(octopus(kb, Msg)) )),
    (   callable(Goal)
    ->  true
    ;   format(string(Msg), "not a goal: ~q", [Text]),
        throw(octopus(kb, Msg))
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
    ;   format(string(Msg), "binding ~w does not occur in the goal", [Name]),
        throw(octopus(kb, Msg))
    ).

output_var(Bindings, Name=_) :-
    \+ sub_atom(Name, 0, _, _, '_'),
    \+ memberchk(Name-_, Bindings).

export_solution(Outs, Pairs) :-
    maplist(export_binding, Outs, Pairs).

export_binding(Name=Value, Name-Exported) :-
    export_value(Value, Exported).

export_value(V, @(none)) :- var(V), !.
export_value(V, V) :- atomic(V), !.
export_value(@(B), @(B)) :- ( B == true ; B == false ; B == none ), !.
export_value(L, E) :- is_list(L), !, maplist(export_value, L, E).
export_value(K-V, -(KE, VE)) :- !, export_value(K, KE), export_value(V, VE).
export_value(D, E) :- is_dict(D), !,
    dict_pairs(D, Tag, Pairs),
    pairs_keys_values(Pairs, Keys, Values),
    maplist(export_value, Values, EValues),
    pairs_keys_values(EPairs, Keys, EValues),
    dict_pairs(E, Tag, EPairs).
export_value(T, S) :-
    format(string(S), "~q", [T]).

guarded(Goal, Result, Reply) :-
    guarded(Goal, Result, kb, Reply).
