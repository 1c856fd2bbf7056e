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

:- use_module(match, [regex_limit/2]).

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
error_reply(error(resource_error(Limit), regex(Source, Where, Length)), _,
            -('$error', query, Msg)) :-
    regex_error_message(Limit, Source, Where, Length, Msg), !.
error_reply(error(resource_error(match_limit), _), _,
            -('$error', query, "a regular expression exceeded its match limit")) :- !.
error_reply(error(type_error(octopus_value, V), _), _, -('$error', query, Msg)) :- !,
    format(string(Msg), "unsupported value: ~q", [V]).
error_reply(E, Kind, -('$error', Kind, Msg)) :-
    error_message(E, Msg).

%   regex_error_message(+Limit, +Source, +Where, +Length, -Message) is semidet.
%
%   The errors of octopus_match:regex_match/3, naming the pattern and the text.

regex_error_message(match_limit, Source, Where, Length, Msg) :-
    regex_limit(match_steps, Steps),
    where_text(Where, What),
    format(string(Msg),
           "regular expression r'~s' exceeded the match limit of ~D steps on ~w \c
            (~D characters); avoid nested quantifiers such as (a+)+ or (.*,)*, or \c
            anchor the pattern", [Source, Steps, What, Length]).
regex_error_message(regex_subject_length, Source, Where, Length, Msg) :-
    regex_limit(subject_length, Max),
    where_text(Where, What),
    format(string(Msg),
           "regular expression r'~s' cannot run on ~w: it has ~D characters, and a \c
            regular expression runs on at most ~D", [Source, What, Length, Max]).

where_text(name, "a record name") :- !.
where_text(key(Key), What) :- !,
    format(string(What), "attribute '~w' of a record", [Key]).
where_text(_, "a text").

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
