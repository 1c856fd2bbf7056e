% Rules of examples/knowledge_base.py: which floor a device is on, from the room it is
% located in (located/2 facts are added by the program).
floor(room_101, 1).
floor(room_204, 2).

device_on_floor(Device, Floor) :-
    located(Device, Room),
    floor(Room, Floor).
