:- module(octopus_reply,
          [ guarded/4,                % :Goal, ?Result, +Kind, -Reply
            error_reply/3,            % +Error, +Kind, -Reply
            error_message/2           % +Error, -Message
          ]).

/** <module> How predicates called from Python report errors

Every predicate Python calls is det and returns a Reply; an error comes back as data,
`-('$error', Kind, Message)`, which octopus/_prolog.py turns into the matching Python
exception (Kind: query, condition, kb, prolog). Nothing is raised across janus.
*/

:- meta_predicate guarded(0, ?, +, -).

%!  guarded(:Goal, ?Result, +Kind, -Reply) is det.
%
%   Run Goal once; Reply is Result, or the error reply when Goal raised (see
%   error_reply/3) or failed. Kind is the kind of unexpected errors.

guarded(Goal, Result, Kind, Reply) :-
    catch(Goal, E, true),
    !,
    (   var(E)
    ->  Reply = Result
    ;   error_reply(E, Kind, Reply)
    ).
guarded(_, _, Kind, -('$error', Kind, "internal error: the goal failed")).

%!  error_reply(+Error, +Kind, -Reply) is det.
%
%   Our own octopus(Kind, Message) errors keep their kind; regex limits and bad values
%   are query errors; anything else is of Kind, with Prolog's message.

error_reply(octopus(Kind, Msg), _, -('$error', Kind, Msg)) :- !.
error_reply(error(resource_error(match_limit), _), _,
            -('$error', query, "a regular expression exceeded its match limit")) :- !.
error_reply(error(resource_error(depth_limit), _), _,
            -('$error', query, "a regular expression exceeded its depth limit")) :- !.
error_reply(error(type_error(octopus_value, V), _), _, -('$error', query, Msg)) :- !,
    format(string(Msg), "unsupported value: ~q", [V]).
error_reply(E, Kind, -('$error', Kind, Msg)) :-
    error_message(E, Msg).

%!  error_message(+Error, -Message:string) is det.
%
%   The text print_message/2 would show for Error, on one line.

error_message(E, Msg) :-
    catch(( '$messages':translate_message(E, Lines, []),
            with_output_to(string(Msg0), print_message_lines(current_output, '', Lines)),
            normalize_space(string(Msg), Msg0)
          ),
          _,
          format(string(Msg), "~q", [E])).
