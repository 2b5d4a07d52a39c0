// A config item name that is not `[a-z][a-z0-9-]*` stops the build at the user's constant.
use grpc_helper::config::ConfigItem;

pub const GOOD: ConfigItem = ConfigItem::new("my-item", "Fine", "1");
pub const BAD: ConfigItem = ConfigItem::new("My_Item", "Capitals and underscores", "1");

fn main() {
    let _ = (GOOD, BAD);
}
