:- module(octopus_skb,
          [ kb_create/3,              % +KB, +Aux, -Reply
            kb_destroy/3,             % +KB, +Aux, -Reply
            kb_load_begin/4,          % +KB, +Aux, +Source, -Reply
            kb_load_chunk/4,          % +KB, +Aux, +Max, -Reply
            kb_load_commit/5,         % +KB, +Aux, +Key, +Limits, -Reply
            kb_load_abort/2,          % +Aux, -Reply
            kb_add_rows/4,            % +KB, +Functor, +Rows, -Reply
            kb_query/7,               % +KB, +Aux, +GoalText, +Bindings, +Limits, +Max, -Reply
            kb_iter_open/6,           % +KB, +Aux, +GoalText, +Bindings, +Limits, -Reply
            kb_iter_next/5,           % +KB, +Aux, +Id, +Step, -Reply
            kb_iter_close/3           % +Aux, +Id, -Reply
          ]).

/** <module> The knowledge base (SKB): trusted facts and rules, in a sandbox

Every engine owns two modules, both named by the Python side from a counter (never
from user data):

  - KB:  the knowledge base proper. Every clause of every loaded file or text is
         asserted here, every directive runs here, every goal is called here.
  - Aux: bookkeeping: the open load ('$stream'/1, '$term'/1), the clause references
         of each consulted file's last load ('$source'/2), the generation of the
         code ('$generation'/1) and the open iterators ('$iter'/4).

Knowledge-base code is trusted like a plugin, but it is confined to KB. Four walls:

  1. The sandbox. Every goal, and every directive of a loaded file, must pass
     library(sandbox)'s safe_goal/1 before it runs: the whole call graph it can reach
     must be known and made of safe predicates. So shell/1, halt/0, open/3,
     foreign predicates, calls through computed goals or computed modules
     (M = octopus_store, M:rec(...)) and asserting rules are refused before anything
     runs; assert/retract of facts in KB are allowed.
  2. Denied predicates. A few predicates the sandbox allows still reach outside KB
     (sleep/1, abort/0, set_prolog_flag/2, print_message/2, loading files,
     cleanup handlers that would outlive a time limit, ...). KB defines them itself
     (static, so KB code cannot redefine them) as calls of denied/1, which the
     sandbox refuses; called anyway, they raise a permission error.
  3. No other module. A goal, a rule or a directive may not name a module other than
     KB (M:G or G@M with M an existing module or an Octopus one): the sandbox would
     let such a call through to exported or system predicates, bypassing wall 2. KB
     imports from system only (not from user).
  4. Limits. Goals run in a Prolog engine of their own, with a stack limit, output
     to a null stream, an inference limit and a deadline; directives run with the
     same limits in the loading thread. KB's catch/3 rethrows the limits' exceptions
     so a catch-all cannot swallow them.

Loading is two-phase so that a file with a syntax error loads nothing:

  1. kb_load_begin/4 opens the source; kb_load_chunk/4 reads up to Max terms per
     call, checks them and keeps them in Aux. Operator declarations take effect in
     KB as they are read (later terms may need them to parse).
  2. kb_load_commit/5 adds all clauses and runs all directives in one transaction:
     an error in a directive leaves the knowledge base as it was.

Every API predicate is det and returns its Reply (plain data that janus converts
without tuples); errors are raised as error(Formal, Context) terms, ours as
octopus_error(kb, Message) (prolog/errors.pl).
*/

:- use_module(library(apply)).
:- use_module(library(error)).
:- use_module(library(lists)).
:- use_module(library(ordsets)).
:- use_module(library(pairs)).
:- use_module(library(sandbox)).
:- use_module(errors).

:- dynamic null_output/1.

%   One process-wide null stream: goals write to it instead of the process's output.
:- initialization(( open_null_stream(S), assertz(null_output(S)) ), now).


                 /*******************************
                 *        MODULES              *
                 *******************************/

%!  kb_create(+KB, +Aux, -Reply) is det.
%
%   Make KB a module that imports from system only, with its own definitions of the
%   denied predicates and of catch/3.

kb_create(KB, Aux, @(true)) :-
    must_be(atom, KB),
    must_be(atom, Aux),
    dynamic([Aux:'$stream'/1, Aux:'$term'/1, Aux:'$source'/2, Aux:'$iter'/4,
             Aux:'$generation'/1, Aux:'$iter_seq'/1, Aux:'$verdict'/4]),
    retractall(Aux:'$generation'(_)),
    assertz(Aux:'$generation'(0)),
    retractall(Aux:'$iter_seq'(_)),
    assertz(Aux:'$iter_seq'(0)),
    set_module(KB:base(system)),
    forall(walled(KB, Head, Body), wall(KB, Head, Body)).

%   walled(+KB, -Head, -Body): KB's own definition of Head.

walled(_, Head, octopus_skb:denied(Head)) :-
    denied(Name, Arity),
    functor(Head, Name, Arity),
    predicate_property(system:Head, defined).
walled(KB, catch(G, C, H), system:catch(KB:G, B, octopus_skb:caught(B, C, KB:H))).
walled(KB, catch_with_backtrace(G, C, H), KB:catch(G, C, H)).

%   denied(?Name, ?Arity): system predicates the sandbox allows but a knowledge base
%   may not call: they wait, end the query or the process, change process-wide
%   flags, print to the process's streams, load files, or run cleanup handlers that
%   a time limit cannot interrupt.

denied(sleep, 1).
denied(abort, 0).
denied(halt, 0).
denied(halt, 1).
denied(set_prolog_flag, 2).
denied(set_prolog_stack, 2).
denied(print_message, 2).
denied(use_module, 1).
denied(use_module, 2).
denied(load_files, 2).
denied(abolish_all_tables, 0).
denied(setup_call_cleanup, 3).
denied(setup_call_catcher_cleanup, 4).
denied(call_cleanup, 2).
denied(undo, 1).

wall(KB, Head, Body) :-
    functor(Head, Name, Arity),
    redefine_system_predicate(KB:Head),
    assertz(KB:(Head :- Body)),
    compile_predicates([KB:Name/Arity]).

%   denied(+Goal): the definition of a denied predicate in KB. The sandbox refuses
%   it (a call into this module that is not exported); called anyway, it raises.

denied(Goal) :-
    functor(Goal, Name, Arity),
    permission_error(call, knowledge_base, Name/Arity).

%   caught(+Ball, ?Catcher, :Recovery): KB's catch/3 without the limits' exceptions.

caught(Ball, _, _) :-
    limit_ball(Ball),
    !,
    throw(Ball).
caught(Ball, Catcher, Recovery) :-
    Ball = Catcher,
    !,
    call(Recovery).
caught(Ball, _, _) :-
    throw(Ball).

limit_ball(time_limit_exceeded).
limit_ball(inference_limit_exceeded).
limit_ball(error(resource_error(_), _)).

%!  kb_destroy(+KB, +Aux, -Reply) is det.
%
%   Close every iterator, retract every dynamic predicate of KB, forget all
%   bookkeeping.

kb_destroy(KB, Aux, @(true)) :-
    abort_(Aux),
    forall(Aux:'$iter'(Id, _, _, _), close_iter(Aux, Id)),
    retractall(Aux:'$source'(_, _)),
    retractall(Aux:'$verdict'(_, _, _, _)),
    forall(( current_predicate(KB:Name/Arity),
             functor(Head, Name, Arity),
             \+ predicate_property(KB:Head, imported_from(_)),
             predicate_property(KB:Head, dynamic)
           ),
           retractall(KB:Head)).


                 /*******************************
                 *          LOADING            *
                 *******************************/

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
%   would make it static before its clauses are asserted). Facts may hold any data
%   but the name of an Octopus module; rules and directives may name no module but
%   KB (wall 3).

keep(KB, _, Line, Clause) :-
    (   Clause = (_ :- _)
    ;   Clause = (:- _)
    ),
    other_module(KB, Clause, M),
    !,
    octopus_error(kb, "line ~w: the knowledge base may not name module ~q", [Line, M]).
keep(KB, _, Line, Clause) :-
    foreign_module(KB, Clause, M),
    !,
    octopus_error(kb, "line ~w: the knowledge base may not name module ~q", [Line, M]).
keep(_, _, _, (:- module(_, _))) :- !.
keep(_, _, _, (:- discontiguous(_))) :- !.     % asserted clauses may be discontiguous
keep(KB, Aux, Line, (:- op(P, T, Ops))) :- !,
    catch(op(P, T, KB:Ops), E, at_line(Line, E)),   % KB:op(...) would be global
    retractall(Aux:'$verdict'(_, _, _, _)).         % goal texts may read differently
keep(_, Aux, Line, (:- Directive)) :- !,
    (   directive_kind(Directive, Kind)
    ->  assertz(Aux:'$term'(directive(Line, Kind)))
    ;   octopus_error(kb, "line ~w: directive ~q is not allowed in a knowledge base",
                      [Line, Directive])
    ).
keep(KB, Aux, Line, Clause) :-
    clause_head(Clause, Head),
    (   Head = M:_, M \== KB
    ->  octopus_error(kb, "line ~w: clause for another module: ~q", [Line, Head])
    ;   view_head(Head)
    ->  functor(Head, Name, Arity),
        octopus_error(kb, "line ~w: ~w/~w is the view of the engine's records \c
                           (docs/rules.md); a knowledge base cannot define it",
                      [Line, Name, Arity])
    ;   callable(Head)
    ->  assertz(Aux:'$term'(clause(Clause)))
    ;   octopus_error(kb, "line ~w: not a clause: ~q", [Line, Clause])
    ).

clause_head((Head :- _), Head) :- !.
clause_head(Head, Head).

%   view_head(+Head): record/1 and attr/3, the read-only view of the engine's records
%   (prolog/rules.pl), imported into every knowledge base.

view_head(record(_)).
view_head(attr(_, _, _)).

%   directive_kind(+Directive, -Kind) is semidet.
%
%   What a directive of a loaded file does: declare dynamic predicates of KB, import
%   a library, or run a goal (sandboxed like any goal). Other declarations (table,
%   multifile, module_transparent, ...) would change more than KB's clauses.

directive_kind(Var, _) :- var(Var), !, fail.
directive_kind(dynamic(Specs), dynamic(Specs)) :- !.
directive_kind(use_module(library(L)), library(L, all)) :- !.
directive_kind(use_module(library(L), Imports), library(L, Imports)) :- !.
directive_kind(ensure_loaded(library(L)), library(L, all)) :- !.
directive_kind(initialization(Goal), goal(Goal)) :- !.
directive_kind(initialization(Goal, now), goal(Goal)) :- !.
directive_kind(initialization(_, _), _) :- !, fail.
directive_kind(Goal, goal(Goal)) :-
    callable(Goal),
    \+ declaration(Goal).

declaration(Goal) :-
    functor(Goal, Name, 1),
    memberchk(Name, [ table, multifile, module_transparent, meta_predicate, public,
                      thread_local, volatile, non_terminal, det, use_module,
                      ensure_loaded, consult, include, load_files, initialization ]).

%   other_module(+KB, +Term, -Module) is semidet.
%
%   Term names Module:_ or _@Module where Module is an existing module other than KB,
%   or one of Octopus' own modules (wall 3). Any position counts, data too: whether a
%   subterm will be called cannot be known before the code runs.

other_module(KB, Term, M) :-
    sub_term(Sub, Term),
    compound(Sub),
    (   Sub = M:_
    ;   Sub = @(_, M)
    ),
    atom(M),
    M \== KB,
    (   current_module(M)
    ;   sub_atom(M, 0, _, _, octopus_)
    ),
    !.

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

%!  kb_load_commit(+KB, +Aux, +Key, +Limits, -Reply) is det.
%
%   Add every kept clause and run every kept directive (each within Limits, see
%   limits/2), in one transaction. Key is the absolute path of a consulted file
%   (whose clauses from an earlier load are removed in the same transaction) or
%   @(none). Reply is the number of clauses.

kb_load_commit(KB, Aux, Key, Limits, Count) :-
    findall(T, Aux:'$term'(T), Terms),
    own_predicates(KB, Before),
    catch(call_cleanup(transaction(commit_terms(KB, Aux, Key, Limits, Terms, Count)),
                       abort_(Aux)),
          E,
          ( drop_new_predicates(KB, Before), throw(E) )),
    retractall(Aux:'$verdict'(_, _, _, _)),
    retract(Aux:'$generation'(G0)),
    G is G0 + 1,
    assertz(Aux:'$generation'(G)).

%   A transaction that rolls back removes the clauses it added, not the predicates
%   their assertion created: a failed load also abolishes those, so that calling
%   them is an unknown procedure again, as before the load.

own_predicates(KB, PIs) :-
    findall(Name/Arity,
            ( current_predicate(KB:Name/Arity),
              functor(Head, Name, Arity),
              \+ predicate_property(KB:Head, imported_from(_)) ),
            PIs0),
    sort(PIs0, PIs).

drop_new_predicates(KB, Before) :-
    own_predicates(KB, After),
    ord_subtract(After, Before, New),
    forall(( member(Name/Arity, New),
             functor(Head, Name, Arity),
             predicate_property(KB:Head, dynamic) ),
           catch(abolish(KB:Name/Arity), _, true)).

commit_terms(KB, Aux, Key, Limits, Terms, Count) :-
    (   Key == @(none)
    ->  true
    ;   unload_source(Aux, Key)
    ),
    foldl(add_term(KB, Limits), Terms, Refs, []),
    length(Refs, Count),
    (   Key == @(none)
    ->  true
    ;   assertz(Aux:'$source'(Key, Refs))
    ).

unload_source(Aux, Key) :-
    forall(retract(Aux:'$source'(Key, Refs)),
           forall(member(Ref, Refs), catch(erase(Ref), _, true))).

add_term(KB, _, clause(Clause), [Ref|Refs], Refs) :-
    catch(assertz(KB:Clause, Ref), E, directive_error(Clause, E)).
add_term(KB, Limits, directive(Line, Kind), Refs, Refs) :-
    catch(directive(KB, Limits, Kind), E, directive_error(Line, Kind, E)).

directive(KB, _, dynamic(Specs)) :-
    dynamic(KB:Specs).
directive(KB, _, library(L, Imports)) :-
    safe_library(L),
    (   Imports == all
    ->  use_module(KB:library(L))
    ;   use_module(KB:library(L), Imports)
    ).
directive(KB, Limits, goal(Goal)) :-
    check_goal(KB, Goal),
    limits(Limits, limits(Timeout, Inferences, Stack, _, _)),
    get_time(Now),
    Deadline is Now + Timeout,
    (   here_within(KB:Goal, Deadline, Inferences, Stack)
    ->  true
    ;   term_text(Goal, Text),
        octopus_error(kb, "directive failed: ~s; nothing was loaded", [Text])
    ).

%   safe_library(+Spec): one of the libraries a knowledge-base file may import. Loading
%   a library runs its directives in the process, and some libraries install global
%   hooks (apply_macros: goal expansion everywhere) or keep global state (gensym,
%   random), so only libraries of pure predicates are on the list. Most of their
%   predicates autoload anyway; importing them explicitly is for the file's reader.

safe_library(L) :-
    pure_library(L),
    !.
safe_library(L) :-
    octopus_error(kb, "library(~q) may not be imported by a knowledge base", [L]).

pure_library(L) :-
    memberchk(L, [ lists, apply, aggregate, pairs, assoc, rbtrees, ordsets, ugraphs,
                   dicts, strings, yall, solution_sequences, error, occurs, terms, sort,
                   option, heaps, varnumbers, nb_set, dcg/basics, dcg/high_order, clpfd,
                   clpb ]).

directive_error(_, _, E) :-
    E = error(octopus_error(kb, Message), _),
    sub_string(Message, _, _, 0, "nothing was loaded"),
    !,
    throw(E).
directive_error(Line, Kind, E) :-
    kind_goal(Kind, Goal),
    kb_error_text(E, Msg0),
    term_text(Goal, Text),
    octopus_error(kb, "line ~w: ~s (in ~s); nothing was loaded", [Line, Msg0, Text]).

%   term_text(+Term, -Text): Term as quoted text, its variables named A, B, ...

term_text(Term, Text) :-
    copy_term(Term, Copy),
    numbervars(Copy, 0, _, [singletons(true)]),
    format(string(Text), "~W", [Copy, [quoted(true), numbervars(true), portray(false)]]).

kind_goal(goal(G), G) :- !.
kind_goal(dynamic(S), dynamic(S)) :- !.
kind_goal(library(L, all), use_module(library(L))) :- !.
kind_goal(library(L, I), use_module(library(L), I)).

directive_error(What, E) :-
    kb_error_text(E, Msg0),
    term_text(What, Text),
    octopus_error(kb, "~s (in ~s); nothing was loaded", [Msg0, Text]).

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
%   them), all or nothing. Reply is the number of facts added. Facts call nothing,
%   so they change no generation.

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


                 /*******************************
                 *           CHECKS            *
                 *******************************/

%   check_goal(+KB, +Goal) is det.
%
%   Raise unless Goal may run in KB (walls 1 to 3). safe_goal/1 checks a copy: it
%   binds variables of the goal it checks (a module variable to the first module
%   that makes the goal safe), and the goal that runs must be the one written.

check_goal(KB, Goal) :-
    check_modules(KB, Goal),
    copy_term(Goal, Copy),
    catch(safe_goal(KB:Copy), E, refused(E)).

check_modules(KB, Goal) :-
    (   other_module(KB, Goal, M)
    ->  octopus_error(kb, "a knowledge-base goal may not name module ~q", [M])
    ;   true
    ).

refused(error(permission_error(call, sandboxed, What), _)) :-
    !,
    (   What = octopus_skb:denied(Goal)
    ->  true
    ;   What = _:Goal
    ->  true
    ;   Goal = What
    ),
    functor(Goal, Name, Arity),
    octopus_error(kb, "not allowed in a knowledge base: ~q", [Name/Arity]).
refused(error(instantiation_error, sandbox(_, _))) :-
    !,
    octopus_error(kb, "not allowed in a knowledge base: a goal or module that is only \c
                       known when the code runs (call/N of a computed goal, M:G of a \c
                       computed module, assert of a computed clause); every called \c
                       predicate must be known before it runs").
refused(error(existence_error(procedure, What), _)) :-
    !,
    (   What = _:Goal
    ->  true
    ;   Goal = What
    ),
    (   Goal = Name/Arity
    ->  true
    ;   functor(Goal, Name, Arity)
    ),
    octopus_error(kb, "Unknown procedure: ~q", [Name/Arity]).
refused(E) :-
    throw(E).

%   kb_error_text(+Error, -Text): the message of an error a goal or directive raised.

kb_error_text(error(permission_error(call, knowledge_base, PI), _), Text) :- !,
    format(string(Text), "not allowed in a knowledge base: ~q", [PI]).
kb_error_text(time_limit_exceeded, "the time limit was exceeded") :- !.
kb_error_text(E, Text) :-
    error_text(E, Text).


                 /*******************************
                 *           LIMITS            *
                 *******************************/

%   limits(+List, -Limits): the limits the Python side passes, as a term:
%   [Timeout, Inferences, StackBytes, Solutions, ReplyBytes].

limits([Timeout, Inferences, Stack, Solutions, Bytes],
       limits(Timeout, Inferences, Stack, Solutions, Bytes)).

%   here_within(:Goal, +Deadline, +Inferences, +Stack) is semidet.
%
%   Goal once, in this thread, within the limits, its output going nowhere. Used for
%   directives: they must run in the loading thread, inside its transaction.

here_within(Goal, Deadline, Inferences, Stack) :-
    current_prolog_flag(stack_limit, Old),
    New is min(Old, Stack),
    current_output(Out),
    null_output(Null),
    setup_call_cleanup(
        ( set_prolog_flag(stack_limit, New), set_output(Null) ),
        limited_once(Goal, Deadline, Inferences),
        ( set_output(Out), set_prolog_flag(stack_limit, Old) )).

limited_once(Goal, Deadline, Inferences) :-
    arm(Deadline),
    catch(( call_with_inference_limit(Goal, Inferences, R), disarm ), E,
          ( disarm, limit_error(E) )),
    !,
    inference_result(R, Inferences).
limited_once(_, _, _) :-
    disarm,
    fail.

inference_result(inference_limit_exceeded, Inferences) :- !,
    octopus_error(kb, "the inference limit (~D) was exceeded", [Inferences]).
inference_result(_, _).

%   limit_error(+Ball): rethrow Ball, as an Octopus error if it is a limit's.

limit_error(time_limit_exceeded) :- !,
    octopus_error(kb, "the time limit was exceeded").
limit_error(error(resource_error(Stack), _)) :-
    memberchk(Stack, [stack, global, local, trail]),
    !,
    octopus_error(kb, "the stack limit was exceeded").
limit_error(E) :-
    throw(E).

%   The deadline. Each armed call sends arm(Target, Call, Deadline) to a message
%   queue: the thread or engine running it, a number for this call, when it must
%   end; disarming sends disarm(Call). One watchdog thread takes the messages every
%   20 ms and signals each target past its deadline, once, with expired(Call). The
%   handler throws only if its target is still in that call: a signal that arrives
%   after the call ended, or in another call, does nothing. The one signal may come
%   while a call recovers from another exception, so the API predicates turn a
%   stray time_limit_exceeded into their error too (limit_error/1). Signalling once
%   means a library predicate that swallows the exception (KB's own catch/3 cannot)
%   lets the goal go on; the inference limit still stops it. (Signalling again every
%   round made the later signals land in the recovery code, outside any catch/3.)
%
%   A message queue, not a dynamic predicate: directives run inside the load's
%   transaction, whose asserts the watchdog would not see until the commit. Not
%   library(time)'s alarms: an alarm per call woke its scheduler thread twice, which
%   cost 25-35 us of process time per goal (twice the goal); and an alarm that
%   re-armed itself from its handler, with remove(true), crashed SWI-Prolog 9.2.9 in
%   remove_alarm/1 within a few hundred calls.

arm(Deadline) :-
    thread_self(Me),
    flag(octopus_call, Call, Call + 1),
    watchdog,
    sig_atomic(( thread_send_message(octopus_deadlines, arm(Me, Call, Deadline)),
                 nb_setval(octopus_call, Call) )).

disarm :-
    sig_atomic(disarm_).

disarm_ :-
    (   nb_current(octopus_call, Call),
        Call \== none
    ->  nb_setval(octopus_call, none),
        thread_send_message(octopus_deadlines, disarm(Call))
    ;   true
    ).

expired(Call) :-
    (   nb_current(octopus_call, Call)
    ->  throw(time_limit_exceeded)
    ;   true
    ).

%   watchdog: start the queue and the watchdog thread unless they are there.

watchdog :-
    (   flag(octopus_watchdog, 1, 1)
    ->  true
    ;   with_mutex(octopus_watchdog,
                   (   flag(octopus_watchdog, 1, 1)
                   ->  true
                   ;   message_queue_create(_, [alias(octopus_deadlines),
                                                max_size(1000000)]),
                       thread_create(watch(t), _, [alias(octopus_watchdog), detached(true)]),
                       flag(octopus_watchdog, _, 1)
                   ))
    ).

%   watch(+Armed): the watchdog's loop. Armed lists the calls running now, as
%   a(Call, Target, Deadline, Rest) ... t: a handful, one per thread or engine in a
%   goal. Nothing may end the loop (the queue would fill), so each round is caught.

watch(Armed0) :-
    sleep(0.02),
    catch(watch_round(Armed0, Armed), _, Armed = Armed0),
    watch(Armed).

watch_round(Armed0, Armed) :-
    take_messages(Armed0, Armed1),
    get_time(Now),
    expire(Armed1, Now, Armed).

expire(t, _, t).
expire(a(Call, Target, Deadline, Rest0), Now, Armed) :-
    expire(Rest0, Now, Rest),
    (   Deadline =< Now
    ->  catch(thread_signal(Target, octopus_skb:expired(Call)), _, true),
        Armed = Rest
    ;   Armed = a(Call, Target, Deadline, Rest)
    ).

take_messages(Armed0, Armed) :-
    (   thread_get_message(octopus_deadlines, Message, [timeout(0)])
    ->  message(Message, Armed0, Armed1),
        take_messages(Armed1, Armed)
    ;   Armed = Armed0
    ).

message(arm(Target, Call, Deadline), t, a(Call, Target, Deadline, t)) :- !.
message(arm(Target, Call, Deadline), Armed, a(Call, Target, Deadline, Armed)).
message(disarm(Call), Armed0, Armed) :-
    drop(Armed0, Call, Armed).

drop(t, _, t).
drop(a(Call, _, _, Rest), Call, Rest) :- !.
drop(a(C, T, D, Rest0), Call, a(C, T, D, Rest)) :-
    drop(Rest0, Call, Rest).


                 /*******************************
                 *           GOALS             *
                 *******************************/

%!  kb_query(+KB, +Aux, +GoalText, +Bindings, +Limits, +[Max, Strict], -Solutions) is det.
%
%   Parse GoalText (trusted application text) in KB, bind the variables named in
%   Bindings (a list of Name-Value; values come as data), check it (walls 1 to 3)
%   and collect its solutions within Limits (wall 4): at most Max of them, and with
%   Strict = @(true) an error if there are more. Limits are those of limits/2; the
%   time and inference limits bound the whole call, the reply bytes all solutions
%   together. The goal runs in the calling thread (an engine of its own would cost
%   120 us a call), its stack limit lowered and its output sent nowhere meanwhile.
%
%   Solutions is a list of dicts, one per solution, from the goal's other named
%   variables (except those starting with an underscore) to their values exported
%   as plain data: numbers, atoms and strings as they are, lists element-wise,
%   unbound variables as @(none), a pair K-V as _{'$pair': [K, V]}, a dict as
%   _{'$dict': Dict} (so the Python side can tell the two apart and rebuild a tuple
%   and a dict), other compound terms as their quoted text. Pairs do not travel as
%   -(K, V): janus-swi 1.5.3 leaks the elements of every tuple it makes.

kb_query(KB, Aux, Text, Bindings, Limits0, [Max, Strict], Solutions) :-
    limits(Limits0, limits(Timeout, Inferences, Stack, _, Bytes)),
    goal(KB, Aux, Text, Bindings, Goal, Outs),
    get_time(Now),
    Deadline is Now + Timeout,
    (   Strict == @(true)
    ->  Take is Max + 1
    ;   Take = Max
    ),
    Size = size(0),
    (   catch(here_within(findall(S, ( limit(Take, KB:Goal),
                                       export_solution(Outs, S, B),
                                       account(Size, B, Bytes) ),
                                  Solutions0),
                          Deadline, Inferences, Stack),
              E, limit_error(E))
    ->  true
    ;   Solutions0 = []
    ),
    (   Strict == @(true), length(Solutions0, Len), Len > Max
    ->  octopus_error(kb, "the goal has more than ~D solutions; pass limit= or \c
                           iterate with prolog_iter()", [Max])
    ;   Solutions = Solutions0
    ).

%   goal(+KB, +Aux, +Text, +Bindings, -Goal, -Outs): the checked goal and its outputs.
%
%   The sandbox's verdict on a goal text is remembered with the parsed goal (at most
%   256 texts of up to 2000 characters, forgotten whenever a load commits or an
%   operator is declared, which could change how the text reads): the analysis of a
%   Kaluga query costs 1.6 ms, its run 50 us, and parsing its text 5 us where taking
%   the remembered term (a fresh copy, as every clause retrieval is) costs 0.3 us.
%   Only the verdict on the goal *before* its bindings is remembered: a goal that is
%   safe with its variables unknown is safe whatever data they are bound to (a
%   variable in a called position would have made it unsafe). The module scan (wall
%   3) runs on the bound goal, unless the goal names no module at all: binding values
%   are data from janus (atoms, numbers, strings, lists, dicts, tuples as -/N), which
%   never hold a M:G term.

goal(KB, Aux, Text, Bindings, Goal, Outs) :-
    (   Aux:'$verdict'(Text, Verdict, Goal, VNs)
    ->  true
    ;   parse_goal(KB, Text, Goal, VNs),
        verdict(KB, Goal, Verdict),
        remember(Aux, Text, Verdict, Goal, VNs)
    ),
    maplist(bind_input(VNs), Bindings),
    include(output_var(Bindings), VNs, Outs),
    (   Verdict == safe
    ->  true
    ;   Verdict == safe_if_no_module
    ->  check_modules(KB, Goal)
    ;   check_goal(KB, Goal)
    ).

parse_goal(KB, Text, Goal, VNs) :-
    catch(term_string(Goal, Text, [variable_names(VNs), module(KB)]),
          error(syntax_error(What), _),
          ( error_text(error(syntax_error(What), _), M0),
            octopus_error(kb, "syntax error in goal: ~s", [M0]) )),
    (   callable(Goal)
    ->  true
    ;   octopus_error(kb, "not a goal: ~q", [Text])
    ).

verdict(KB, Goal, Verdict) :-
    copy_term(Goal, Open),
    (   \+ other_module(KB, Open, _),
        catch(safe_goal(KB:Open), _, fail)
    ->  (   sub_term(Sub, Goal), compound(Sub), ( Sub = _:_ ; Sub = @(_, _) )
        ->  Verdict = safe_if_no_module
        ;   Verdict = safe
        )
    ;   Verdict = check
    ).

remember(Aux, Text, Verdict, Goal, VNs) :-
    (   string_length(Text, Len), Len =< 2000
    ->  (   predicate_property(Aux:'$verdict'(_, _, _, _), number_of_clauses(N)), N >= 256
        ->  retractall(Aux:'$verdict'(_, _, _, _))
        ;   true
        ),
        assertz(Aux:'$verdict'(Text, Verdict, Goal, VNs))
    ;   true
    ).

bind_input(VNs, Name-Value) :-
    (   memberchk(Name=Var, VNs)
    ->  Var = Value
    ;   octopus_error(kb, "binding ~w does not occur in the goal", [Name])
    ).

output_var(Bindings, Name=_) :-
    \+ sub_atom(Name, 0, _, _, '_'),
    \+ memberchk(Name-_, Bindings).

%   engine_setup(+Stack): the limits an iterator's engine sets itself.

engine_setup(Stack) :-
    set_prolog_flag(stack_limit, Stack),
    null_output(Null),
    set_output(Null).

%   account(!Size, +Bytes, +Max): add Bytes to Size; raise past Max.

account(Size, Bytes, Max) :-
    arg(1, Size, Total0),
    Total is Total0 + Bytes,
    (   Total > Max
    ->  octopus_error(kb, "the solutions exceed the reply limit of ~D bytes", [Max])
    ;   nb_setarg(1, Size, Total)
    ).

%   export_solution(+Outs, -Solution, -Bytes): the solution as a dict (see
%   kb_query/7) and roughly what it takes once converted: 64 bytes per solution,
%   16 per value and per list cell, plus the length of every atom and string.
%   Measured while exporting: a separate walk over the exported dict, through
%   foldl/4, cost 2.5 us a solution, more than finding and exporting it.

export_solution(Outs, Solution, Bytes) :-
    export_bindings(Outs, Pairs, 64, Bytes),
    dict_pairs(Solution, solution, Pairs).

export_bindings([], [], B, B).
export_bindings([Name=Value|Outs], [Name-Exported|Pairs], B0, B) :-
    atomic_size(Name, B0, B1),
    export_value(Value, Exported, B1, B2),
    export_bindings(Outs, Pairs, B2, B).

export_value(V, E, B0, B) :-
    (   var(V)
    ->  E = @(none),
        B is B0 + 16
    ;   atomic(V)
    ->  E = V,
        atomic_size(V, B0, B)
    ;   V = @(X), ( X == true ; X == false ; X == none )
    ->  E = V,
        B is B0 + 16
    ;   is_list(V)
    ->  export_list(V, E, B0, B)
    ;   V = K-W
    ->  E = _{'$pair': [KE, WE]},
        B1 is B0 + 64,
        export_value(K, KE, B1, B2),
        export_value(W, WE, B2, B)
    ;   is_dict(V)
    ->  dict_pairs(V, Tag, Pairs),
        B1 is B0 + 64,
        export_pairs(Pairs, EPairs, B1, B),
        dict_pairs(D, Tag, EPairs),
        E = _{'$dict': D}
    ;   format(string(E), "~q", [V]),
        string_length(E, L),
        B is B0 + L + 16
    ).

export_list([], [], B, B).
export_list([V|Vs], [E|Es], B0, B) :-
    B1 is B0 + 16,
    export_value(V, E, B1, B2),
    export_list(Vs, Es, B2, B).

export_pairs([], [], B, B).
export_pairs([K-V|Pairs], [K-E|EPairs], B0, B) :-
    atomic_size(K, B0, B1),
    export_value(V, E, B1, B2),
    export_pairs(Pairs, EPairs, B2, B).

atomic_size(V, B0, B) :-
    (   atom(V)
    ->  atom_length(V, L),
        B is B0 + L + 16
    ;   string(V)
    ->  string_length(V, L),
        B is B0 + L + 16
    ;   integer(V)
    ->  B is B0 + 16 + msb(abs(V) + 1) // 8
    ;   B is B0 + 16
    ).


                 /*******************************
                 *          ITERATORS          *
                 *******************************/

%!  kb_iter_open(+KB, +Aux, +GoalText, +Bindings, +Limits, -Id) is det.
%
%   Check the goal as kb_query/6 does and start it in an engine kept in Aux under
%   the integer Id; kb_iter_next/5 takes its solutions, kb_iter_close/3 ends it.
%   The engine holds only the goal's own state: no lock, no stream, no transaction.

kb_iter_open(KB, Aux, Text, Bindings, Limits0, Id) :-
    limits(Limits0, limits(_, Inferences, Stack, _, _)),
    goal(KB, Aux, Text, Bindings, Goal, Outs),
    Aux:'$generation'(Gen),
    engine_create(S, steps(KB:Goal, Outs, Inferences, Stack, S), Engine),
    retract(Aux:'$iter_seq'(Id0)),
    Id is Id0 + 1,
    assertz(Aux:'$iter_seq'(Id)),
    assertz(Aux:'$iter'(Id, Engine, KB:Goal, Gen)).

%   steps(:Goal, +Outs, +Inferences, +Stack, -Sized) is nondet.
%
%   The engine's goal: every step (one engine_post/3 of deadline(D)) runs until the
%   next solution within the deadline and Inferences. Sized is sized(Solution, Bytes).

steps(Goal, Outs, Inferences, Stack, sized(Solution, Bytes)) :-
    engine_setup(Stack),
    fetch_arm,
    (   catch(( call_with_inference_limit(Goal, Inferences, R), disarm ), E,
              ( disarm, limit_error(E) ))
    ;   disarm,
        fail
    ),
    inference_result(R, Inferences),
    export_solution(Outs, Solution, Bytes),
    (   true
    ;   fetch_arm,
        fail
    ).

fetch_arm :-
    engine_fetch(deadline(Deadline)),
    arm(Deadline).

%!  kb_iter_next(+KB, +Aux, +Id, +Step, -Reply) is det.
%
%   Step is [Max, Timeout, Bytes]: take up to Max more solutions within Timeout
%   seconds (for all of them), each at most Bytes. Reply is [Solutions, Done]: Done
%   is @(false) while there may be more, @(true) when the goal has no more, or the
%   message of an error that ended the step after Solutions (the caller reports it
%   once it has handed those out). When Done is not @(false) the iterator is closed.
%   If the knowledge base was loaded into since the goal was checked, it is checked
%   again first. An error before any solution closes the iterator and is raised.

kb_iter_next(KB, Aux, Id, [Max, Timeout, Bytes], [Solutions, Done]) :-
    (   Aux:'$iter'(Id, Engine, Goal, Gen0)
    ->  true
    ;   octopus_error(kb, "the iterator is closed")
    ),
    catch(next_(KB, Aux, Id, Engine, Goal, Gen0, Max, Timeout, Bytes, Solutions, Done),
          E,
          ( close_iter(Aux, Id), limit_error(E) )).

next_(KB, Aux, Id, Engine, KB:Goal, Gen0, Max, Timeout, Bytes, Solutions, Done) :-
    Aux:'$generation'(Gen),
    (   Gen == Gen0
    ->  true
    ;   check_goal(KB, Goal),
        retract(Aux:'$iter'(Id, Engine, KB:Goal, Gen0)),
        assertz(Aux:'$iter'(Id, Engine, KB:Goal, Gen))
    ),
    get_time(Now),
    Deadline is Now + Timeout,
    take(Max, Engine, Deadline, Bytes, Solutions, Done0),
    (   Done0 == more
    ->  Done = @(false)
    ;   close_iter(Aux, Id),
        (   Done0 = error(E)
        ->  catch(limit_error(E), Error, true),
            kb_error_text(Error, Done)
        ;   Done = @(true)
        )
    ).

%   take(+N, +Engine, +Deadline, +Bytes, -Solutions, -Done): Done is more, end or
%   error(E) after at least one solution (before the first, E is raised).

take(0, _, _, _, [], more) :- !.
take(N, Engine, Deadline, Bytes, Solutions, Done) :-
    catch(( engine_post(Engine, deadline(Deadline), sized(S, SBytes))
          ->  account(size(0), SBytes, Bytes),
              Next = solution(S)
          ;   Next = end
          ),
          E,
          Next = error(E)),
    next_solution(Next, N, Engine, Deadline, Bytes, Solutions, Done).

next_solution(solution(S), N, Engine, Deadline, Bytes, [S|Rest], Done) :-
    N1 is N - 1,
    take_more(N1, Engine, Deadline, Bytes, Rest, Done).
next_solution(end, _, _, _, _, [], end).
next_solution(error(E), _, _, _, _, _, _) :-
    throw(E).

%   After a solution, an error ends the step with what it has.

take_more(N, Engine, Deadline, Bytes, Solutions, Done) :-
    catch(take(N, Engine, Deadline, Bytes, Solutions, Done), E,
          ( Solutions = [], Done = error(E) )).

%!  kb_iter_close(+Aux, +Id, -Reply) is det.
%
%   End iterator Id (idempotent).

kb_iter_close(Aux, Id, @(true)) :-
    close_iter(Aux, Id).

close_iter(Aux, Id) :-
    forall(retract(Aux:'$iter'(Id, Engine, _, _)),
           catch(engine_destroy(Engine), _, true)).
