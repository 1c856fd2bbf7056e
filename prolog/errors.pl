:- module(octopus_errors,
          [ octopus_error/2,          % +Kind, +Message
            octopus_error/3,          % +Kind, +Format, +Args
            describe_error/2          % +Error, -[Kind, Message]
          ]).

/** <module> The errors of Octopus' Prolog modules

Octopus predicates raise standard error(Formal, Context) terms: the formals of
library(error) where one fits (type_error/2, domain_error/2, resource_error/1, ...), and
octopus_error(Kind, Message) where the message is Octopus' own. Kind says whose fault
it is:

  | Kind   | raised when                                    | Python exception  |
  |--------|------------------------------------------------|-------------------|
  | query  | a query, record or value cannot be used        | QueryError        |
  | kb     | a knowledge-base load or goal fails            | KnowledgeBaseError|

octopus/adapter.py turns an error into an exception with one call of
describe_error/2; print_message/2 shows octopus_error/2 terms as their message.
*/

:- multifile prolog:error_message//1.

prolog:error_message(octopus_error(_Kind, Message)) -->
    [ '~w'-[Message] ].

%!  octopus_error(+Kind, +Message) is det.
%!  octopus_error(+Kind, +Format, +Args) is det.
%
%   Throw error(octopus_error(Kind, Message), _).

octopus_error(Kind, Message) :-
    throw(error(octopus_error(Kind, Message), _)).

octopus_error(Kind, Format, Args) :-
    format(string(Message), Format, Args),
    octopus_error(Kind, Message).

%!  describe_error(+Error, -Description) is det.
%
%   Description is [Kind, Message]: Kind is query, kb or prolog (an error Octopus did
%   not expect), Message one line of text.

describe_error(E, [Kind, Message]) :-
    (   known_error(E, Kind0, Message0)
    ->  Kind = Kind0,
        Message = Message0
    ;   Kind = prolog,
        catch(message_to_string(E, Text), _, format(string(Text), "~q", [E])),
        normalize_space(string(Message), Text)
    ).

known_error(error(octopus_error(Kind, Message), _), Kind, Message).
known_error(error(resource_error(match_limit), regex(Source, Where, Length, Steps)),
            query, Message) :-
    where_text(Where, What),
    format(string(Message),
           "regular expression r'~s' exceeded the match limit of ~D steps on ~w \c
            (~D characters); avoid nested quantifiers such as (a+)+ or (.*,)*, or \c
            anchor the pattern", [Source, Steps, What, Length]).
known_error(error(resource_error(regex_subject_length), regex(Source, Where, Length, Max)),
            query, Message) :-
    where_text(Where, What),
    format(string(Message),
           "regular expression r'~s' cannot run on ~w: it has ~D characters, and a \c
            regular expression runs on at most ~D", [Source, What, Length, Max]).
known_error(error(resource_error(match_limit), _), query,
            "a regular expression exceeded its match limit").
known_error(error(type_error(octopus_value, V), _), query, Message) :-
    format(string(Message), "unsupported value: ~q", [V]).

%   where_text(+Where, -Text): what a regex ran on (octopus_match:regex_match/3).
where_text(name, "a record name") :- !.
where_text(key(Key), What) :- !,
    format(string(What), "attribute '~w' of a record", [Key]).
where_text(_, "a text").
