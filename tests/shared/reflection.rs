//! Reading an app through its `AppTypeRegistry`, as the Bevy inspector does, included by
//! both test binaries (`#[path]`).

use std::any::TypeId;

use bevy::prelude::*;
use bevy::reflect::TypeData;

/// A type's id and name, for [`assert_registered_with`].
pub fn ty<T: 'static>() -> (TypeId, &'static str) {
    (TypeId::of::<T>(), std::any::type_name::<T>())
}

/// Asserts that every type of `types` is registered in `world` with the type data `D`.
pub fn assert_registered_with<D: TypeData>(world: &World, types: &[(TypeId, &str)]) {
    let registry = world.resource::<AppTypeRegistry>().read();
    for (id, name) in types {
        let registration = registry
            .get(*id)
            .unwrap_or_else(|| panic!("{name} is not registered"));
        assert!(
            registration.data::<D>().is_some(),
            "{name} is registered without {}",
            std::any::type_name::<D>()
        );
    }
}

/// The resource of type `type_id` as an inspector reads it: found by type id alone and
/// reflected through the registry's `ReflectFromPtr`, on the entity that holds it.
pub fn reflected_resource(world: &World, type_id: TypeId) -> &dyn Reflect {
    let component = world
        .components()
        .get_valid_id(type_id)
        .expect("no component id for the type");
    let entity = world
        .resource_entities()
        .get(component)
        .expect("the resource is not in the world");
    world.get_reflect(entity, type_id).expect("not reflected")
}
